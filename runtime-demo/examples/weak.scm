;;; Weak boxes, a weak table (ephemerons) and finalizers. A cache of "expensive" results keyed
;;; by objects: entries live exactly as long as their keys; a finalizer reports each resource
;;; the program dropped without closing. The number of objects is the first command-line
;;; argument (default 1000):
;;;   runtime-demo run examples/weak.scm -- 100

(define n
  (let ((args (command-line)))
    (if (pair? args) (string->number (car args)) 1000)))

(define (say . parts) (for-each display parts) (newline))

;; Weak tables: keys held weakly, each value kept alive only while its key is (a list of
;; ephemerons behind a one-slot vector, compared with eq?; there is no identity hash yet, so
;; a lookup is linear). Entries whose key died are dropped as the table is used.
(define (make-weak-table) (vector '()))

(define (weak-table-prune! t)
  (let loop ((l (vector-ref t 0)) (acc '()))
    (cond ((null? l) (vector-set! t 0 (reverse acc)))
          ((ephemeron-key (car l)) (loop (cdr l) (cons (car l) acc)))
          (else (loop (cdr l) acc)))))

(define (weak-table-ref t key default)
  (let loop ((l (vector-ref t 0)))
    (cond ((null? l) default)
          ((eq? (ephemeron-key (car l)) key) (ephemeron-value (car l) default))
          (else (loop (cdr l))))))

(define (weak-table-set! t key value)
  (weak-table-prune! t)
  (let loop ((l (vector-ref t 0)) (acc '()))
    (cond ((null? l)
           (vector-set! t 0 (cons (make-ephemeron key value) (reverse acc))))
          ((eq? (ephemeron-key (car l)) key) (loop (cdr l) acc))
          (else (loop (cdr l) (cons (car l) acc))))))

(define (weak-table-count t)
  (weak-table-prune! t)
  (length (vector-ref t 0)))

;; Weak boxes: one to a kept object, one to a dropped one.
(define kept (list 'kept 1 2 3))
(define box-kept (make-weak-box kept))
(define box-dropped (make-weak-box (list 'dropped)))
(gc-full)
(say box-kept " of a kept object: " (weak-box-value box-kept))
(say "weak box of a dropped object: " (weak-box-value box-dropped 'gone))

;; A weak table: keys are n fresh objects; the program keeps every tenth one.
(define cache (make-weak-table))
(define (expensive k) (* k k))
(define keys
  (let loop ((i 0) (acc '()))
    (if (= i n)
        acc
        (let ((key (vector i)))
          ;; The value refers back to its key: still collected with it (an ephemeron).
          (weak-table-set! cache key (cons (expensive i) key))
          (loop (+ i 1) (if (= 0 (modulo i 10)) (cons key acc) acc))))))
(say "cache entries made: " n)
(gc-full)
(say "cache entries after collection: " (weak-table-count cache))
(say "cached value of a kept key: "
     (car (weak-table-ref cache (car keys) '(none))))
(say "sum of cached values: "
     (fold-left + 0 (map (lambda (k) (car (weak-table-ref cache k '(0)))) keys)))

;; Finalizers: every resource registers its name; the ones the program drops are reported
;; after a collection, by name (the held value: the resource itself is gone, never
;; resurrected); the one still referenced is not.
(define (insert s l)
  (cond ((null? l) (list s))
        ((string<? s (car l)) (cons s l))
        (else (cons (car l) (insert s (cdr l))))))
(define (sort-strings l) (fold-left (lambda (acc s) (insert s acc)) '() l))
(define (open-resource name)
  (let ((r (vector name 'open)))
    (register-finalizer! r name)
    r))
(define (close! r) (vector-set! r 1 'closed))
(define handles
  (let loop ((i 0) (acc '()))
    (if (= i 5)
        acc
        (loop (+ i 1) (cons (open-resource (string-append "file-" (number->string i))) acc)))))
(define first-handle (car handles))
(close! first-handle)
(set! handles #f)
(gc-full)
(gc-full)
(define leaked (take-finalized))
(say "finalized: " (length leaked) " " (sort-strings leaked))
(say "still referenced: " (vector-ref first-handle 0) " (" (vector-ref first-handle 1) ")")
(say "finalized later: " (take-finalized))
