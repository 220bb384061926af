;;; Multi-threaded allocation churn: four threads (each its own Faultline mutator) build and
;;; discard lists and trees concurrently while the main thread does the same; collections stop
;;; all of them. Results come back through `join` and are combined in a fixed order, so the
;;; output is deterministic. The number of rounds per worker is the first command-line argument
;;; (default 1500): runtime-demo run examples/threads.scm -- 50

(define rounds
  (let ((args (command-line)))
    (if (pair? args) (string->number (car args)) 1500)))

(define (say . parts) (for-each display parts) (newline))

(define (make-tree d) (if (= d 0) '() (cons (make-tree (- d 1)) (make-tree (- d 1)))))
(define (count t) (if (null? t) 0 (+ 1 (count (car t)) (count (cdr t)))))

;; Each worker builds `rounds` lists of 200 numbers and a small tree per round, keeping only
;; a running checksum and the last list.
(define (worker id rounds)
  (lambda ()
    (let loop ((i 0) (sum 0) (keep '()))
      (if (< i rounds)
          (let* ((l (iota 200 (+ i id)))
                 (t (make-tree 6)))
            (loop (+ i 1) (+ sum (fold-left + 0 l) (count t)) l))
          (list id sum (length keep) (car keep))))))

(define threads (map (lambda (id) (spawn (worker id rounds))) '(1 2 3 4)))

;; The main thread churns too while the workers run.
(define main-sum
  (let loop ((i 0) (acc 0))
    (if (< i (quotient rounds 3))
        (loop (+ i 1) (+ acc (length (reverse (iota 300)))))
        acc)))

(define results (map join threads))
(for-each (lambda (r)
            (say "worker " (car r) ": checksum " (cadr r) ", kept " (caddr r)
                 " elements starting at " (cadddr r)))
          results)
(say "main thread: " main-sum)
(say "total: " (fold-left + main-sum (map cadr results)))

;; Threads returning closures and data structures to the parent.
(define t (spawn (lambda () (let ((secret 42)) (lambda (x) (+ x secret))))))
(say "closure from a thread: " ((join t) 8))
(say "join again returns the same value: " ((join t) 0))
