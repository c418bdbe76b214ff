//! The tests' random generator: xorshift64, deterministic from its seed, so a failure replays.
//! One file for the unit tests (`crate::testing::rng`) and the integration tests (included by
//! `tests/common` with `#[path]`).

/// xorshift64 from a non-zero seed.
pub struct XorShift(pub u64);

#[allow(dead_code)] // each user takes what it needs
impl XorShift {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Changes, inserts, deletes or truncates at `input` up to `most` times, the new byte taken
    /// from `interesting` half of the time (not empty), else any.
    pub fn mutate(&mut self, input: &mut Vec<u8>, interesting: &[u8], most: usize) {
        for _ in 0..self.below(most + 1) {
            let at = self.below(input.len() + 1);
            let byte = if self.below(2) == 0 {
                *self.pick(interesting)
            } else {
                self.next() as u8
            };
            match self.below(4) {
                0 if at < input.len() => input[at] = byte,
                1 => input.insert(at, byte),
                2 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.truncate(at),
            }
        }
    }
}
