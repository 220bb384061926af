//! [`LogHist`]: the log-linear latency histogram of the mutator's steps (section 1).

use std::time::Duration;

/// A log-linear histogram of nanoseconds (4 buckets per power of two: a percentile is
/// reported as its bucket's lower bound, within 25 % below the true value).
pub struct LogHist {
    pub buckets: Vec<u64>,
    pub max: u64,
    pub n: u64,
}

impl Default for LogHist {
    fn default() -> Self {
        LogHist {
            buckets: vec![0; 256],
            max: 0,
            n: 0,
        }
    }
}

impl LogHist {
    pub fn bucket(ns: u64) -> usize {
        if ns < 4 {
            return ns as usize;
        }
        let lz = 63 - ns.leading_zeros() as usize;
        ((lz * 4) + ((ns >> (lz - 2)) & 3) as usize).min(255)
    }
    pub fn lower(b: usize) -> u64 {
        if b < 4 {
            return b as u64;
        }
        (1u64 << (b / 4)) | (((b % 4) as u64) << (b / 4 - 2))
    }
    pub fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[Self::bucket(ns)] += 1;
        self.max = self.max.max(ns);
        self.n += 1;
    }
    pub fn quantile(&self, q: f64) -> Duration {
        if self.n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut acc = 0;
        for (b, &c) in self.buckets.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return Duration::from_nanos(Self::lower(b));
            }
        }
        Duration::from_nanos(self.max)
    }
}
