;;; The prelude: library procedures written in the language itself (loaded into every VM).
;;; Higher-order procedures live here rather than in Rust so that primitives never call back
;;; into the interpreter. Every loop is a tail call; results are built in reverse and then
;;; reversed, so long lists need no deep recursion.

(define (map f l . ls)
  (cond ((null? ls)
         (let loop ((l l) (acc '()))
           (if (pair? l)
               (loop (cdr l) (cons (f (car l)) acc))
               (reverse acc))))
        ((null? (cdr ls))
         (let loop ((a l) (b (car ls)) (acc '()))
           (if (and (pair? a) (pair? b))
               (loop (cdr a) (cdr b) (cons (f (car a) (car b)) acc))
               (reverse acc))))
        (else
         (let loop ((ls (cons l ls)) (acc '()))
           (if (every pair? ls)
               (loop (map1 cdr ls) (cons (apply f (map1 car ls)) acc))
               (reverse acc))))))

(define (map1 f l)
  (let loop ((l l) (acc '()))
    (if (pair? l)
        (loop (cdr l) (cons (f (car l)) acc))
        (reverse acc))))

(define (for-each f l . ls)
  (cond ((null? ls)
         (let loop ((l l))
           (if (pair? l)
               (begin (f (car l)) (loop (cdr l))))))
        ((null? (cdr ls))
         (let loop ((a l) (b (car ls)))
           (if (and (pair? a) (pair? b))
               (begin (f (car a) (car b)) (loop (cdr a) (cdr b))))))
        (else
         (let loop ((ls (cons l ls)))
           (if (every pair? ls)
               (begin (apply f (map1 car ls)) (loop (map1 cdr ls))))))))

(define (every pred l)
  (let loop ((l l))
    (cond ((null? l) #t)
          ((pred (car l)) (loop (cdr l)))
          (else #f))))

(define (any pred l)
  (let loop ((l l))
    (cond ((null? l) #f)
          ((pred (car l)) => (lambda (x) x))
          (else (loop (cdr l))))))

(define (filter pred l)
  (let loop ((l l) (acc '()))
    (cond ((null? l) (reverse acc))
          ((pred (car l)) (loop (cdr l) (cons (car l) acc)))
          (else (loop (cdr l) acc)))))

(define (fold-left f init l)
  (let loop ((acc init) (l l))
    (if (pair? l) (loop (f acc (car l)) (cdr l)) acc)))

(define (fold-right f init l)
  (let loop ((acc init) (l (reverse l)))
    (if (pair? l) (loop (f (car l) acc) (cdr l)) acc)))

(define (reduce f init l)
  (if (null? l) init (fold-left f (car l) (cdr l))))

(define (iota n . start)
  (let ((s (if (null? start) 0 (car start))))
    (let loop ((i (- n 1)) (acc '()))
      (if (< i 0) acc (loop (- i 1) (cons (+ s i) acc))))))

(define (vector-map f v)
  (let* ((n (vector-length v)) (out (make-vector n)))
    (let loop ((i 0))
      (if (< i n)
          (begin (vector-set! out i (f (vector-ref v i))) (loop (+ i 1)))
          out))))

(define (vector-for-each f v)
  (let ((n (vector-length v)))
    (let loop ((i 0))
      (if (< i n) (begin (f (vector-ref v i)) (loop (+ i 1)))))))

(define (list-index pred l)
  (let loop ((l l) (i 0))
    (cond ((null? l) #f)
          ((pred (car l)) i)
          (else (loop (cdr l) (+ i 1))))))

; Identity hash tables: buckets chosen by `eq-hash`, which is stable while a key lives, however
; often the collector moves it (no rehash after a collection).
(define (make-eq-table) (vector 'eq-table (make-vector 64 '()) 0))

(define (eq-table-bucket t k)
  (let ((b (vector-ref t 1)))
    (modulo (eq-hash k) (vector-length b))))

(define (eq-table-ref t k default)
  (let ((e (assq k (vector-ref (vector-ref t 1) (eq-table-bucket t k)))))
    (if e (cdr e) default)))

(define (eq-table-set! t k v)
  (let* ((buckets (vector-ref t 1))
         (i (eq-table-bucket t k))
         (e (assq k (vector-ref buckets i))))
    (if e
        (set-cdr! e v)
        (begin
          (vector-set! buckets i (cons (cons k v) (vector-ref buckets i)))
          (vector-set! t 2 (+ 1 (vector-ref t 2)))))))

(define (eq-table-count t) (vector-ref t 2))
