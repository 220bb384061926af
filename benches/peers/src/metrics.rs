//! Pause statistics of one record: nearest-rank percentiles and minimum mutator utilisation.
//!
//! MMU(w) is the smallest fraction of any window of length `w` inside `[0, total]` that is not
//! covered by a pause. The minimum is reached by a window that starts where a pause starts or
//! ends where a pause ends (or at either end of the run), so only those windows are evaluated;
//! covered time in a window comes from prefix sums over the merged pause intervals.
//!
//! Invariants: percentiles are values that occurred (nearest rank, no interpolation); MMU is
//! `None` when the window is longer than the run, and pauses are clipped to `[0, total]`.

/// The `p`-th percentile (0 < p <= 100) by nearest rank; `None` for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps float noise (99.9 / 100 * 1000 = 999.0000000000001) from adding a rank.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Pause intervals in seconds, clipped to `[0, total]`, sorted and merged where they overlap.
fn intervals(starts_s: &[f64], pauses_ms: &[f64], total_s: f64) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = starts_s
        .iter()
        .zip(pauses_ms)
        .map(|(&s, &d)| (s.max(0.0), (s + d / 1e3).min(total_s)))
        .filter(|&(s, e)| e > s)
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Minimum mutator utilisation for a window of `window_s` seconds.
pub fn mmu(starts_s: &[f64], pauses_ms: &[f64], total_s: f64, window_s: f64) -> Option<f64> {
    if window_s <= 0.0 || window_s > total_s {
        return None;
    }
    let iv = intervals(starts_s, pauses_ms, total_s);
    // prefix[i] = paused time of intervals 0..i.
    let mut prefix = vec![0.0];
    for &(s, e) in &iv {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + (e - s));
    }
    // Paused time in [0, x].
    let covered = |x: f64| -> f64 {
        let k = iv.partition_point(|&(s, _)| s <= x);
        if k == 0 {
            return 0.0;
        }
        let (s, e) = iv[k - 1];
        prefix[k - 1] + (x.min(e) - s).max(0.0)
    };
    let mut candidates = vec![0.0, total_s - window_s];
    for &(s, e) in &iv {
        candidates.push(s);
        candidates.push(e - window_s);
    }
    let worst = candidates
        .into_iter()
        .map(|t| t.clamp(0.0, total_s - window_s))
        .map(|t| covered(t + window_s) - covered(t))
        .fold(0.0, f64::max);
    Some((1.0 - worst / window_s).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(500.0));
        assert_eq!(percentile(&v, 99.0), Some(990.0));
        assert_eq!(percentile(&v, 99.9), Some(999.0));
        assert_eq!(percentile(&v, 100.0), Some(1000.0));
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn mmu_of_known_layouts() {
        // One 10 ms pause at 0.5 s in a 1 s run: any 10 ms window can be fully paused.
        assert_eq!(mmu(&[0.5], &[10.0], 1.0, 0.010), Some(0.0));
        // A 20 ms window holds at most the 10 ms pause: 50 %.
        let m = mmu(&[0.5], &[10.0], 1.0, 0.020).unwrap();
        assert!((m - 0.5).abs() < 1e-9, "{m}");
        // Two 10 ms pauses 15 ms apart (0.500-0.510, 0.525-0.535): a 35 ms window holds both.
        let m = mmu(&[0.5, 0.525], &[10.0, 10.0], 1.0, 0.035).unwrap();
        assert!((m - (1.0 - 20.0 / 35.0)).abs() < 1e-9, "{m}");
        // A 25 ms window cannot hold both: 0.500..0.525 and 0.510..0.535 hold 10 ms each,
        // 0.505..0.530 holds 5 + 5 ms; so the minimum is 1 - 10/25.
        let m = mmu(&[0.5, 0.525], &[10.0, 10.0], 1.0, 0.025).unwrap();
        assert!((m - 0.6).abs() < 1e-9, "{m}");
        // No pauses: full utilisation; window longer than the run: undefined.
        assert_eq!(mmu(&[], &[], 1.0, 0.1), Some(1.0));
        assert_eq!(mmu(&[0.1], &[1.0], 0.05, 0.1), None);
    }

    #[test]
    fn overlapping_and_clipped_pauses() {
        // Two overlapping pauses count once; a pause past the end is clipped.
        let m = mmu(&[0.0, 0.005], &[10.0, 10.0], 0.1, 0.1).unwrap();
        assert!((m - 0.85).abs() < 1e-9, "{m}");
        let m = mmu(&[0.095], &[100.0], 0.1, 0.1).unwrap();
        assert!((m - 0.95).abs() < 1e-9, "{m}");
    }
}
