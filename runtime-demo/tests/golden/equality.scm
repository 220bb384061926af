; eq?, eqv?, equal? and the type predicates.
(define (show . xs) (for-each (lambda (x) (write x) (display " ")) xs) (newline))
(show (eq? 'a 'a) (eq? '() '()) (eq? 1 1) (eq? "a" "a") (eq? car car))
(define s "str")
(show (eq? s s) (eqv? 1.5 1.5) (eqv? 1 1.0) (eqv? #\a #\a) (eqv? (list 1) (list 1)))
(show (equal? (list 1 2 (vector 3 "x")) (list 1 2 (vector 3 "x"))) (equal? "ab" "ab") (equal? '(1 2) '(1 3)))
(show (equal? 2.0 2.0) (equal? 2 2.0) (equal? #(1 2) #(1 2)) (equal? '() '()))
(show (boolean? #f) (boolean? 0) (vector? #(1)) (vector? '(1)) (pair? '(1)) (symbol? 'x))
(show #t #f #true #false)
