(display (/ 1.0 0))
(newline)
(display (quotient 1 0))
