//! Finite projective plane quorums (Maekawa's optimum): the lines of PG(2, q).

use std::fmt;

use super::{MAX_NODES, NodeId, QuorumError, QuorumSystem, Table, check_count, id};

/// Finite projective plane quorums: the `n = q*q + q + 1` nodes are the points of the
/// projective plane PG(2, q) for a prime `q`, and each node asks one line through it.
///
/// Any two lines of a projective plane meet in exactly one point, so any two quorums
/// intersect; each has `q + 1` members, about `sqrt(n)`, the smallest possible
/// (Maekawa 1985). Supported: every prime `q` with `n <= MAX_NODES`, that is
/// `n` = 7, 13, 31, 57, 133, 183, 307, 381, 553, 871 and 993.
///
/// **Construction** (Singer's cyclic plane). Take GF(q^3) as polynomials over Z_q
/// modulo an irreducible cubic for which `x` generates GF(q^3)* modulo the scalars
/// GF(q)*. Point `i` is the 1-dimensional subspace spanned by `x^i`, for `i` in
/// `0..n`; the points `i` whose `x^i` has no `x^2` term form a line `D` (a
/// 2-dimensional subspace) of `q + 1` points, with `0` in it. Multiplying by `x` maps
/// lines to lines and point `i` to `i + 1`, so the `n` translates `D + j` (mod n) are
/// the `n` lines. Node `i`'s quorum is `D + i`: it contains `i` (as `0` is in `D`),
/// distinct nodes get distinct lines, and every node is in exactly `q + 1` quorums.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{ProjectivePlane, QuorumSystem};
///
/// let fano = ProjectivePlane::new(7)?;
/// assert_eq!(fano.order(), 2);
/// assert_eq!(fano.quorum_size(), 3);
/// for i in 0..7 {
///     for j in 0..7 {
///         let shared = fano.quorum(i).iter().filter(|m| fano.quorum(j).contains(m));
///         assert!(shared.count() >= 1);
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ProjectivePlane {
    /// `q`: the plane's order, a prime.
    order: usize,
    /// Quorum `i` is the line `D + i` (mod n), sorted.
    table: Table,
}

impl ProjectivePlane {
    /// The plane with `nodes = q*q + q + 1` points, `q` prime.
    ///
    /// # Errors
    ///
    /// [`QuorumError::NotAPlane`] when `nodes` is not `q*q + q + 1` for a prime `q`
    /// (this includes 21 = 4*4+4+1: PG(2, 4) exists, but needs GF(4), which this
    /// construction does not build), [`QuorumError::Empty`] for 0 and
    /// [`QuorumError::TooMany`] above [`MAX_NODES`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{ProjectivePlane, QuorumError, QuorumSystem};
    ///
    /// assert_eq!(ProjectivePlane::new(13)?.quorum_size(), 4);
    /// assert_eq!(ProjectivePlane::new(12).unwrap_err(), QuorumError::NotAPlane { nodes: 12 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(nodes: usize) -> Result<Self, QuorumError> {
        let n = check_count("plane", nodes)?;
        let q = prime_order(n).ok_or(QuorumError::NotAPlane { nodes })?;
        let line = singer_line(q).ok_or(QuorumError::NotAPlane { nodes })?;
        let table = Table::build(n, |i, out| {
            out.extend(line.iter().map(|&d| id((d + i) % n)));
            out.sort_unstable();
        });
        table.check("plane")?;
        Ok(ProjectivePlane { order: q, table })
    }

    /// Whether [`new`](Self::new) accepts `nodes`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::ProjectivePlane;
    ///
    /// let sizes: Vec<usize> = (1..=60).filter(|&n| ProjectivePlane::exists(n)).collect();
    /// assert_eq!(sizes, [7, 13, 31, 57]);
    /// ```
    pub fn exists(nodes: usize) -> bool {
        nodes <= MAX_NODES && prime_order(nodes).is_some()
    }

    /// The order `q`: each quorum has `q + 1` members.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::ProjectivePlane;
    ///
    /// assert_eq!(ProjectivePlane::new(31)?.order(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn order(&self) -> usize {
        self.order
    }
}

impl QuorumSystem for ProjectivePlane {
    fn nodes(&self) -> usize {
        self.table.nodes()
    }

    fn quorum(&self, node: NodeId) -> &[NodeId] {
        self.table.get("plane", node)
    }

    fn name(&self) -> &'static str {
        "plane"
    }

    fn quorum_size(&self) -> usize {
        self.order + 1
    }

    /// `q`. A line meets every line, so `q + 1` dead nodes can block all quorums. No `q`
    /// dead nodes can: through a live point pass `q + 1` lines, each dead point lies on
    /// just one of them, so one line through it has no dead point.
    fn tolerates(&self) -> usize {
        self.order
    }
}

impl fmt::Debug for ProjectivePlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectivePlane")
            .field("nodes", &self.nodes())
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

/// The prime `q` with `q*q + q + 1 == n`, if there is one.
fn prime_order(n: usize) -> Option<usize> {
    let q = (2..).take_while(|&q| q * q + q < n).last()?;
    (q * q + q + 1 == n && is_prime(q)).then_some(q)
}

fn is_prime(q: usize) -> bool {
    q >= 2
        && (2..)
            .take_while(|&d| d * d <= q)
            .all(|d| !q.is_multiple_of(d))
}

/// An element of GF(q^3): coefficients of `1, x, x^2`, each below `q`.
type Cubic = [usize; 3];

/// The line `D` of Singer's cyclic plane of order `q` (see [`ProjectivePlane`]):
/// sorted, `q + 1` exponents in `0..n`, starting with 0. `None` only if no cubic
/// works, which cannot happen for a prime `q` (primitive cubics exist).
fn singer_line(q: usize) -> Option<Vec<usize>> {
    let n = q * q + q + 1;
    // The modulus x^3 + a x^2 + b x + c, tried in order.
    for a in 0..q {
        for b in 0..q {
            for c in 1..q {
                let irreducible =
                    (0..q).all(|t| !(t * t * t + a * t * t + b * t + c).is_multiple_of(q));
                if !irreducible {
                    continue;
                }
                if let Some(line) = line_if_generator(q, n, [a, b, c]) {
                    return Some(line);
                }
            }
        }
    }
    None
}

/// Walks `x^0 .. x^(n-1)` modulo `x^3 + a x^2 + b x + c`; if they are `n` distinct
/// projective points (so `x` generates the points), the exponents with no `x^2` term.
fn line_if_generator(q: usize, n: usize, [a, b, c]: [usize; 3]) -> Option<Vec<usize>> {
    let mut seen = vec![false; q * q * q];
    let mut line = Vec::with_capacity(q + 1);
    let mut v: Cubic = [1, 0, 0];
    for i in 0..n {
        let key = normalized(q, v);
        if std::mem::replace(&mut seen[key], true) {
            return None;
        }
        if v[2] == 0 {
            line.push(i);
        }
        // v * x: shift up, and x^3 = -(a x^2 + b x + c).
        let top = v[2];
        v = [
            (q - top * c % q) % q,
            (v[0] + q - top * b % q) % q,
            (v[1] + q - top * a % q) % q,
        ];
    }
    (line.len() == q + 1).then_some(line)
}

/// A point's key: its coordinates scaled so the first nonzero one is 1, read base `q`.
fn normalized(q: usize, v: Cubic) -> usize {
    let lead = v.iter().copied().find(|&x| x != 0).unwrap_or(1);
    // lead^(q-2) is lead's inverse mod the prime q (Fermat).
    let mut inv = 1;
    for _ in 0..q - 2 {
        inv = inv * lead % q;
    }
    v.iter().rev().fold(0, |key, &x| key * q + x * inv % q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        let planes: Vec<(usize, usize)> = (1..=MAX_NODES)
            .filter_map(|n| prime_order(n).map(|q| (n, q)))
            .collect();
        let want = [7, 13, 31, 57, 133, 183, 307, 381, 553, 871, 993];
        assert_eq!(planes.iter().map(|p| p.0).collect::<Vec<_>>(), want);
        assert_eq!(prime_order(21), None); // q = 4: not prime
        assert_eq!(prime_order(0), None);
        assert!(!ProjectivePlane::exists(1407)); // q = 37, above MAX_NODES
        assert!(matches!(
            ProjectivePlane::new(1407),
            Err(QuorumError::TooMany { .. })
        ));
    }

    /// Any two distinct lines meet in exactly one point, and each point is on q + 1
    /// lines: the plane's axioms, for every order up to 13 (n = 183).
    #[test]
    fn lines_meet_once_and_load_is_q_plus_1() {
        for n in [7, 13, 31, 57, 133, 183] {
            let p = ProjectivePlane::new(n).unwrap();
            let q = p.order();
            let mut load = vec![0; n];
            for i in 0..n {
                let a = p.quorum(id(i));
                assert_eq!(a.len(), q + 1);
                for &x in a {
                    load[usize::from(x)] += 1;
                }
                for j in i + 1..n {
                    let shared = a.iter().filter(|m| p.quorum(id(j)).contains(m)).count();
                    assert_eq!(shared, 1, "n = {n}: lines {i} and {j}");
                }
            }
            assert!(load.iter().all(|&l| l == q + 1), "n = {n}");
        }
    }

    #[test]
    fn fano() {
        let p = ProjectivePlane::new(7).unwrap();
        // A perfect difference set mod 7 containing 0: every nonzero residue is a
        // difference of two members exactly once.
        let d = p.quorum(0);
        let mut diffs: Vec<usize> = d
            .iter()
            .flat_map(|&x| {
                d.iter()
                    .map(move |&y| (usize::from(x) + 7 - usize::from(y)) % 7)
            })
            .filter(|&r| r != 0)
            .collect();
        diffs.sort_unstable();
        assert_eq!(diffs, [1, 2, 3, 4, 5, 6]);
    }
}
