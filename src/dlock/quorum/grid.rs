//! Grid quorums: a node asks its row and its column (Maekawa's practical choice).

use std::fmt;

use super::{NodeId, QuorumError, QuorumSystem, Table, check_count, id};

/// Grid quorums: nodes laid out row by row in a grid `ceil(sqrt(n))` wide (the last
/// row may be short), and each node asks its own row plus its own column.
///
/// For a full `w x w` grid the quorum size is `2w - 1` (9 nodes: 5, 16: 7, 25: 9) and
/// every node is in `2w - 1` quorums.
///
/// **Why any two quorums intersect, short last row included.** Take nodes at (row,
/// column) `(a, b)` and `(c, d)`. The cell `(a, d)` is in the first node's row and the
/// second's column; `(c, b)` is in the second's row and the first's column. If either
/// cell holds a node, the quorums share it. Only the last row has empty cells, at
/// columns at or beyond its length `L`. So `(a, d)` empty means `a` is the last row,
/// and then `b < L` because `(a, b)` holds a node; `(c, b)` empty would need `b >= L`.
/// Both cannot be empty, so no extra members are needed for short grids (and the
/// construction check confirms it for each grid built).
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{Grid, QuorumSystem};
///
/// // 0 1 2
/// // 3 4 5
/// // 6 7 8
/// let g = Grid::new(9)?;
/// assert_eq!(g.quorum(4), &[1, 3, 4, 5, 7]);
/// assert_eq!(g.quorum_size(), 5);
/// assert_eq!(g.tolerates(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Grid {
    /// Nodes per full row: `ceil(sqrt(n))`.
    width: usize,
    /// Quorum `i`: row `i / width` and column `i % width`, merged and sorted.
    table: Table,
}

impl Grid {
    /// Grid quorums for `nodes` nodes.
    ///
    /// # Errors
    ///
    /// [`QuorumError::Empty`] for 0 nodes, [`QuorumError::TooMany`] above
    /// [`MAX_NODES`](super::MAX_NODES).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Grid, QuorumSystem};
    ///
    /// // 0 1 2
    /// // 3 4 5
    /// // 6
    /// let g = Grid::new(7)?;
    /// assert_eq!(g.quorum(6), &[0, 3, 6]);
    /// assert_eq!(g.quorum(2), &[0, 1, 2, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(nodes: usize) -> Result<Self, QuorumError> {
        let n = check_count("grid", nodes)?;
        let width = ceil_sqrt(n);
        let table = Table::build(n, |i, out| {
            let (row, col) = (i / width, i % width);
            // The row, then the rest of the column: below and above the row.
            out.extend((row * width..n.min((row + 1) * width)).map(id));
            out.extend(
                (col..n)
                    .step_by(width)
                    .filter(|&j| j / width != row)
                    .map(id),
            );
            out.sort_unstable();
        });
        table.check("grid")?;
        Ok(Grid { width, table })
    }

    /// Nodes per full row, `ceil(sqrt(n))`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::Grid;
    ///
    /// assert_eq!(Grid::new(10)?.width(), 4);
    /// assert_eq!(Grid::new(16)?.width(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows, the last one possibly short.
    fn rows(&self) -> usize {
        self.nodes().div_ceil(self.width)
    }
}

impl QuorumSystem for Grid {
    fn nodes(&self) -> usize {
        self.table.nodes()
    }

    fn quorum(&self, node: NodeId) -> &[NodeId] {
        self.table.get("grid", node)
    }

    fn name(&self) -> &'static str {
        "grid"
    }

    fn quorum_size(&self) -> usize {
        self.table.max_len()
    }

    /// One less than the fewest dead nodes that meet every quorum. With `r` rows of
    /// width `w` and a last row of length `L`, a dead set D meets every quorum exactly
    /// when no node sits in a row D misses and a column D misses. That holds when D
    /// touches every row (`r` nodes: column 0 reaches every row), or every column (`w`: row
    /// 0), or, for a short last row, when D misses only the last row and only
    /// columns at or beyond `L` (D touches the `r - 1` other rows and the `L` columns
    /// below `L`: `max(r - 1, L)` nodes, placed on a diagonal of the full rows).
    fn tolerates(&self) -> usize {
        let (w, r) = (self.width, self.rows());
        let last = self.nodes() - (r - 1) * w;
        let mut fewest = r.min(w);
        if last < w {
            fewest = fewest.min((r - 1).max(last));
        }
        fewest - 1
    }
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grid")
            .field("nodes", &self.nodes())
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

/// The smallest `w` with `w * w >= n`.
fn ceil_sqrt(n: usize) -> usize {
    let mut w = n.isqrt();
    if w * w < n {
        w += 1;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_sqrt_small() {
        let got: Vec<usize> = (1..=10).map(ceil_sqrt).collect();
        assert_eq!(got, [1, 2, 2, 2, 3, 3, 3, 3, 3, 4]);
    }

    #[test]
    fn full_grids_have_size_and_load_2w_minus_1() {
        for w in 1..=8 {
            let g = Grid::new(w * w).unwrap();
            let mut load = vec![0; w * w];
            for i in 0..w * w {
                assert_eq!(g.quorum(id(i)).len(), 2 * w - 1);
                for &x in g.quorum(id(i)) {
                    load[usize::from(x)] += 1;
                }
            }
            assert!(load.iter().all(|&l| l == 2 * w - 1), "w = {w}");
            assert_eq!(g.tolerates(), w - 1);
        }
    }

    #[test]
    fn short_last_row() {
        // 0 1 2 3
        // 4 5 6 7
        // 8 9
        let g = Grid::new(10).unwrap();
        assert_eq!(g.quorum(9), &[1, 5, 8, 9]);
        assert_eq!(g.quorum(3), &[0, 1, 2, 3, 7]);
        assert_eq!(g.quorum(0), &[0, 1, 2, 3, 4, 8]);
        assert_eq!(g.quorum_size(), 6);
    }
}
