(define (first-of x) (car x))
(define (g n) (+ 1 (first-of n)))
(define (h) (g 42))
(display (h))
