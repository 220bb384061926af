; Identity hash tables keyed by heap objects: lookups keep working across collections that move
; every key (run under --gc-stress in the stressed golden modes).
(define t (make-eq-table))
(define keys (map (lambda (i) (list i)) (iota 300)))
(for-each (lambda (k) (eq-table-set! t k (* 10 (car k)))) keys)
(define (garbage n) (if (> n 0) (begin (make-vector 20 n) (garbage (- n 1)))))
(garbage 20000)
(display (eq-table-count t)) (newline)
(display (fold-left + 0 (map (lambda (k) (eq-table-ref t k 0)) keys))) (newline)
(display (eq-table-ref t (list 5) 'absent)) (newline)
(display (= (eq-hash (car keys)) (eq-hash (car keys)))) (newline)
(eq-table-set! t (car keys) 'first)
(display (eq-table-ref t (car keys) #f)) (newline)
(display (eq-table-count t)) (newline)
