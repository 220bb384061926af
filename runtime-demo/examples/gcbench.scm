;;; GCBench, after Hans Boehm's benchmark: a long-lived tree and a long-lived array stay
;;; reachable while many temporary complete binary trees are built top-down (allocate the
;;; nodes, then fill in their children by mutation) and bottom-up (children first).
;;;
;;; The sizes are scaled down for an interpreter. The maximum tree depth is the first
;;; command-line argument (default 14): runtime-demo run examples/gcbench.scm -- 10

(define max-depth
  (let ((args (command-line)))
    (if (pair? args) (max 4 (string->number (car args))) 14)))
(define stretch-depth (+ max-depth 2))
(define long-lived-depth max-depth)
(define array-size (* 50 (expt 2 (- max-depth 4))))
(define min-depth 4)

;; A node is a vector #(left right i j).
(define (make-node left right) (vector left right 0 0))
(define (left n) (vector-ref n 0))
(define (right n) (vector-ref n 1))

(define (tree-size depth) (- (expt 2 (+ depth 1)) 1))
(define (iterations depth) (quotient (* 2 (tree-size stretch-depth)) (tree-size depth)))

;; Top-down: the node exists before its children.
(define (populate! depth node)
  (if (> depth 0)
      (begin
        (vector-set! node 0 (make-node #f #f))
        (vector-set! node 1 (make-node #f #f))
        (populate! (- depth 1) (left node))
        (populate! (- depth 1) (right node)))))

;; Bottom-up: the children exist before the node.
(define (make-tree depth)
  (if (<= depth 0)
      (make-node #f #f)
      (make-node (make-tree (- depth 1)) (make-tree (- depth 1)))))

(define (count-nodes n)
  (if (vector? n)
      (+ 1 (count-nodes (left n)) (count-nodes (right n)))
      0))

(define (say . parts) (for-each display parts) (newline))

(define (time-construction depth)
  (let ((n (iterations depth)))
    (say "Creating " n " trees of depth " depth)
    (let loop ((i 0) (nodes 0))
      (if (< i n)
          (let ((t (make-node #f #f)))
            (populate! depth t)
            (loop (+ i 1) (+ nodes (count-nodes t))))
          (say "  Top down construction: " nodes " nodes")))
    (let loop ((i 0) (nodes 0))
      (if (< i n)
          (loop (+ i 1) (+ nodes (count-nodes (make-tree depth))))
          (say "  Bottom up construction: " nodes " nodes")))))

(say "Garbage Collector Test")
(say " Stretching memory with a binary tree of depth " stretch-depth)
(say " Stretch tree nodes: " (count-nodes (make-tree stretch-depth)))

(say " Creating a long-lived binary tree of depth " long-lived-depth)
(define long-lived (make-node #f #f))
(populate! long-lived-depth long-lived)

(say " Creating a long-lived array of " array-size " doubles")
(define array (make-vector array-size 0.0))
(let loop ((i 1))
  (if (< i (quotient array-size 2))
      (begin (vector-set! array i (/ 1.0 i)) (loop (+ i 1)))))

(let loop ((d min-depth))
  (if (<= d max-depth)
      (begin (time-construction d) (loop (+ d 2)))))

(define probe (quotient array-size 5))
(if (or (not (vector? long-lived)) (not (= (vector-ref array probe) (/ 1.0 probe))))
    (say "Failed")
    (say " Long-lived tree nodes: " (count-nodes long-lived)
         ", array[" probe "] = " (vector-ref array probe)))
