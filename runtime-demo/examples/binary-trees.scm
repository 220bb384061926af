;;; binary-trees, after the Computer Language Benchmarks Game: allocate and check many
;;; short-lived complete binary trees while one long-lived tree stays reachable.
;;;
;;; Output format is the Benchmarks Game's. The maximum depth is the first command-line
;;; argument, default 16:
;;;   runtime-demo run examples/binary-trees.scm            ; depth 16
;;;   runtime-demo run examples/binary-trees.scm -- 10      ; depth 10

(define max-depth
  (let ((args (command-line)))
    (if (pair? args) (max 6 (string->number (car args))) 16)))
(define min-depth 4)

;; A node is a pair (left . right); a leaf has empty children.
(define (make-tree depth)
  (if (= depth 0)
      (cons '() '())
      (cons (make-tree (- depth 1)) (make-tree (- depth 1)))))

(define (check tree)
  (if (null? (car tree))
      1
      (+ 1 (check (car tree)) (check (cdr tree)))))

(define (say . parts)
  (for-each display parts)
  (newline))

(let ((stretch (+ max-depth 1)))
  (say "stretch tree of depth " stretch "\t check: " (check (make-tree stretch))))

(define long-lived (make-tree max-depth))

(let loop ((depth min-depth))
  (if (<= depth max-depth)
      (let ((iterations (expt 2 (+ (- max-depth depth) min-depth))))
        (let count ((i 0) (sum 0))
          (if (< i iterations)
              (count (+ i 1) (+ sum (check (make-tree depth))))
              (say iterations "\t trees of depth " depth "\t check: " sum)))
        (loop (+ depth 2)))))

(say "long lived tree of depth " max-depth "\t check: " (check long-lived))
