;; args: --max-stack 100000
(define (forever n) (+ 1 (forever n)))
(forever 0)
