;; args: --heap 1M
(define (grow acc) (grow (cons (make-vector 100 0) acc)))
(display "growing")
(newline)
(grow '())
