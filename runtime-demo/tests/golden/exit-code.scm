(display "exiting with 3")
(newline)
(exit 3)
(display "not reached")
