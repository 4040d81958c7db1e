//! Handle tables: 64-bit handles carrying a kind tag, a generation and a slot index, so that 0,
//! closed, never issued and wrong-kind handles are all told apart from live ones.
//!
//! Layout of a handle: bits 56..64 kind tag, bits 24..56 generation, bits 0..24 slot index.
//! A slot's generation changes every time it is freed, so a stale handle never names the object
//! that reuses its slot. Tables are never reset (not even by `aapi_terminate`), so handles of an
//! earlier init cycle stay invalid too.

/// Tag of server handles.
pub(crate) const SERVER_TAG: u8 = 0x53;
/// Tag of object handles.
pub(crate) const OBJECT_TAG: u8 = 0x4f;

const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const GEN_MASK: u64 = 0xffff_ffff;

/// Why a handle does not name a live entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandleError {
    /// The handle is 0.
    Zero,
    /// The handle belongs to the other table (an object handle given as a server, or back).
    WrongKind,
    /// The handle was issued but has been closed.
    Closed,
    /// The handle was never issued.
    Unknown,
}

impl HandleError {
    /// Words for the last-error message, e.g. "is 0".
    pub(crate) fn describe(self) -> &'static str {
        match self {
            HandleError::Zero => "is 0, which is never a valid handle",
            HandleError::WrongKind => "is a handle of the other kind (server vs object)",
            HandleError::Closed => "was closed",
            HandleError::Unknown => "was never issued by this plugin",
        }
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A table of live entries addressed by handle.
pub(crate) struct Slots<T> {
    tag: u8,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

impl<T> Slots<T> {
    pub(crate) const fn new(tag: u8) -> Slots<T> {
        Slots {
            tag,
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    fn encode(&self, generation: u32, index: u32) -> u64 {
        (u64::from(self.tag) << 56) | (u64::from(generation) << INDEX_BITS) | u64::from(index)
    }

    fn decode(&self, handle: u64) -> Result<(u32, usize), HandleError> {
        if handle == 0 {
            return Err(HandleError::Zero);
        }
        let tag = (handle >> 56) as u8;
        if tag != self.tag {
            return Err(if tag == SERVER_TAG || tag == OBJECT_TAG {
                HandleError::WrongKind
            } else {
                HandleError::Unknown
            });
        }
        let generation = ((handle >> INDEX_BITS) & GEN_MASK) as u32;
        let index = (handle & INDEX_MASK) as usize;
        let slot = self.slots.get(index).ok_or(HandleError::Unknown)?;
        if slot.value.is_some() && slot.generation == generation {
            Ok((generation, index))
        } else if generation != 0 && generation < slot.generation {
            // Generations below the slot's current one were all issued and closed (a freed
            // slot's current generation has not been issued yet).
            Err(HandleError::Closed)
        } else {
            Err(HandleError::Unknown)
        }
    }

    /// Store `value` and return its new handle; `Err(value)` when the table is full.
    pub(crate) fn insert(&mut self, value: T) -> Result<u64, T> {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            let generation = slot.generation;
            return Ok(self.encode(generation, index));
        }
        let index = self.slots.len() as u64;
        if index > INDEX_MASK {
            return Err(value);
        }
        self.slots.push(Slot {
            generation: 1,
            value: Some(value),
        });
        Ok(self.encode(1, index as u32))
    }

    /// The entry of a live handle.
    pub(crate) fn get(&self, handle: u64) -> Result<&T, HandleError> {
        let (_, index) = self.decode(handle)?;
        Ok(self.slots[index].value.as_ref().expect("decode checked it"))
    }

    /// Remove a live handle's entry; the handle is invalid from now on.
    pub(crate) fn remove(&mut self, handle: u64) -> Result<T, HandleError> {
        let (_, index) = self.decode(handle)?;
        Ok(self.free_slot(index).expect("decode checked it"))
    }

    fn free_slot(&mut self, index: usize) -> Option<T> {
        let slot = &mut self.slots[index];
        let value = slot.value.take()?;
        // Generation 0 is skipped so that a wrapped counter never repeats the first handle.
        slot.generation = slot.generation.checked_add(1).unwrap_or(1);
        self.free.push(index as u32);
        Some(value)
    }

    /// Remove every entry for which `pred` holds, returning them with their handles.
    pub(crate) fn remove_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if slot.value.as_ref().is_some_and(&mut pred) {
                let handle = self.encode(slot.generation, index as u32);
                out.push((handle, self.free_slot(index).expect("checked above")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_stale_forged_and_wrong_kind_handles() {
        let mut servers = Slots::new(SERVER_TAG);
        let mut objects: Slots<&str> = Slots::new(OBJECT_TAG);
        let a = servers.insert("a").unwrap();
        assert_ne!(a, 0);
        assert_eq!(servers.get(a), Ok(&"a"));
        assert_eq!(servers.get(0), Err(HandleError::Zero));
        assert_eq!(objects.get(a), Err(HandleError::WrongKind));
        assert_eq!(servers.get(a + 1), Err(HandleError::Unknown));
        assert_eq!(servers.get(0xdead_beef), Err(HandleError::Unknown));
        assert_eq!(servers.remove(a), Ok("a"));
        assert_eq!(servers.get(a), Err(HandleError::Closed));
        assert_eq!(servers.remove(a), Err(HandleError::Closed));
        // The slot is reused with a new generation: the old handle stays dead.
        let b = servers.insert("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(servers.get(a), Err(HandleError::Closed));
        assert_eq!(servers.get(b), Ok(&"b"));
        // A generation that was never issued is unknown, not closed.
        assert_eq!(
            servers.get(b + (1 << INDEX_BITS)),
            Err(HandleError::Unknown)
        );
        let o = objects.insert("o").unwrap();
        assert_eq!(servers.get(o), Err(HandleError::WrongKind));
    }

    #[test]
    fn remove_where_frees_matching_entries() {
        let mut t = Slots::new(OBJECT_TAG);
        let h: Vec<u64> = (0..5).map(|i| t.insert(i).unwrap()).collect();
        let gone = t.remove_where(|v| v % 2 == 0);
        assert_eq!(
            gone,
            vec![(h[0], 0), (h[2], 2), (h[4], 4)],
            "handles come back with their values"
        );
        assert_eq!(t.get(h[1]), Ok(&1));
        assert_eq!(t.get(h[2]), Err(HandleError::Closed));
    }
}
