;;; Closure-heavy workload: counters with private state, composition, currying, Church
;;; numerals, and higher-order map/filter/fold over long lists. Every closure captures a heap
;;; frame, so this exercises frames surviving collections and being shared between closures.
;;; The length of the long lists is the first command-line argument (default 100000):
;;;   runtime-demo run examples/closures.scm -- 1000

(define n
  (let ((args (command-line)))
    (if (pair? args) (string->number (car args)) 100000)))

(define (say . parts) (for-each display parts) (newline))

;; Counters: each has its own captured state; two closures share one frame.
(define (make-counter)
  (let ((n 0))
    (cons (lambda () (set! n (+ n 1)) n)
          (lambda () n))))

(define counters (map (lambda (i) (make-counter)) (iota 100)))
(let loop ((i 0))
  (if (< i 1000)
      (begin
        ((car (list-ref counters (modulo i 100))))
        (loop (+ i 1)))))
(say "counter totals: " (fold-left + 0 (map (lambda (c) ((cdr c))) counters)))

;; Composition and currying.
(define (compose . fs)
  (if (null? fs)
      (lambda (x) x)
      (lambda (x) ((car fs) ((apply compose (cdr fs)) x)))))
(define (curry f . early) (lambda late (apply f (append early late))))
(define add1 (curry + 1))
(define double (curry * 2))
(define pipeline (compose add1 double add1 double))
(say "pipeline 5 => " (pipeline 5))
(say "composed 100 times: "
     ((apply compose (map (lambda (i) add1) (iota 100))) 0))

;; Church numerals.
(define zero (lambda (f) (lambda (x) x)))
(define (succ n) (lambda (f) (lambda (x) (f ((n f) x)))))
(define (plus m n) (lambda (f) (lambda (x) ((m f) ((n f) x)))))
(define (church->int n) ((n (lambda (k) (+ k 1))) 0))
(define (int->church k) (if (= k 0) zero (succ (int->church (- k 1)))))
(say "church 30 + 20 = " (church->int (plus (int->church 30) (int->church 20))))

;; Long lists through higher-order procedures, many times over.
(define big (iota n))
(define (sum l) (fold-left + 0 l))
(let loop ((round 0) (acc 0))
  (if (< round 10)
      (let* ((squares (map (lambda (x) (* x x)) big))
             (evens (filter even? squares))
             (scaled (map (lambda (x y) (+ x y round)) big squares)))
        (loop (+ round 1) (+ acc (sum evens) (sum scaled))))
      (say "ten rounds over " n " elements: " acc)))

;; Closures stored in a vector, each capturing its index.
(define adders (make-vector 1000))
(let loop ((i 0))
  (if (< i 1000)
      (begin (vector-set! adders i (lambda (x) (+ x i))) (loop (+ i 1)))))
(say "sum of adders applied to 1: "
     (let loop ((i 0) (acc 0))
       (if (< i 1000) (loop (+ i 1) (+ acc ((vector-ref adders i) 1))) acc)))

;; A closure-based object with dispatch.
(define (make-account balance)
  (lambda (msg . args)
    (cond ((eq? msg 'deposit) (set! balance (+ balance (car args))) balance)
          ((eq? msg 'withdraw)
           (if (> (car args) balance)
               'insufficient
               (begin (set! balance (- balance (car args))) balance)))
          ((eq? msg 'balance) balance)
          (else (error "unknown message" msg)))))
(define acct (make-account 100))
(acct 'deposit 50)
(say "withdraw 500: " (acct 'withdraw 500))
(say "withdraw 30: " (acct 'withdraw 30))
(say "balance: " (acct 'balance))
