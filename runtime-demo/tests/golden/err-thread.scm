(define t (spawn (lambda () (car '()))))
(display "spawned")
(newline)
(join t)
