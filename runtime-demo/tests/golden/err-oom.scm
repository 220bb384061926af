;; args: --heap 1M
(define (grow acc) (grow (make-vector 100 acc)))
(display "growing")
(newline)
(grow '())
