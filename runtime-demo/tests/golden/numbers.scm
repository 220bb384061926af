; Fixnums, flonums, overflow promotion, arithmetic and numeric predicates.
(define (show . xs) (for-each (lambda (x) (write x) (display " ")) xs) (newline))
(show (+) (+ 1 2 3) (- 10) (- 10 4 3) (*) (* 2 3 4) (/ 12 4) (/ 7 2) (/ 2))
(show (+ 1 2.5) (* 1.5 2) (- 0.5 1) (/ 1.0 4) (/ 1 0.0) (- (/ 1 0.0)) (sqrt -0.0))
(show (quotient 17 5) (remainder 17 5) (modulo 17 5) (quotient -17 5) (remainder -17 5) (modulo -17 5) (modulo 17 -5))
(show (= 1 1 1) (< 1 2 3) (< 1 3 2) (> 3 2 1) (<= 1 1 2) (>= 2 2 3) (= 1 1.0) (< 1 1.5))
(show (abs -7) (abs 7.5) (min 3 1 2) (max 3 1 2) (max 1 2.0) (min 1 2.0))
(show (exact->inexact 3) (inexact->exact 4.0) (exact 2.0) (inexact 7))
(show (sqrt 16) (sqrt 2) (expt 2 10) (expt 2.0 0.5) (expt 2 -1) (exp 0) (log 1))
(show (floor 2.5) (ceiling 2.5) (round 2.5) (round 3.5) (truncate -2.7) (floor 3))
(show (number? 1) (number? 1.5) (number? 'a) (integer? 2) (integer? 2.0) (integer? 2.5))
(show (exact? 1) (inexact? 1.0) (zero? 0) (zero? 0.0) (positive? 3) (negative? -2) (odd? 7) (even? 7))
(show (gcd 12 18) (lcm 4 6) (number->string 255) (number->string 255 16) (number->string 2.5))
(show (string->number "42") (string->number "-1.5e2") (string->number "abc") (string->number "#xff"))
; The fixnum range is 61 bits: results outside it become flonums (documented in value.rs).
(define big 1152921504606846975)
(show big (+ big 1) (- (- big) 2) (* big 2) (* 4611686018427387904 4))
(show (expt 2 59) (expt 2 60) (expt 10 30))
; Sums of more than two: a partial sum leaving the fixnum range is redone exactly (the
; total fits again), or promotes; a flonum anywhere makes the sum a flonum.
(show (+ big 1 -1) (+ -1 big 1) (+ 1 big 1) (+ 1 2 2.5) (+ 2.5 1 2) (+ -5 2 3) (+ 1 2 3 4 5))
(show 9223372036854775807 (- 0 -9223372036854775807))
(show 1e21 1e-7 123.456 -0.0 +inf.0 -inf.0)
(display (/ 0. 0.)) (newline)
