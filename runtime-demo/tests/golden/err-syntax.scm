(define (f x)
  (display "unterminated)
