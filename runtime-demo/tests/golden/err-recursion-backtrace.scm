(define (down n) (if (= n 0) (vector-ref (vector) 0) (+ 1 (down (- n 1)))))
(down 30)
