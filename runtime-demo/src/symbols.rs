//! Interned symbols: [`SymbolId`] and the [`SymbolTable`] that assigns them.
//!
//! Symbols are shared by every layer: the compiler resolves global variables to ids, the value
//! encoding carries ids in symbol immediates, the VM indexes its global table by id, and the
//! printer turns ids back into names. This module depends on nothing else in the crate.
//!
//! Invariants:
//! - Ids are dense: the `n`th distinct name interned gets `SymbolId(n)`, so an id doubles as
//!   an index (the VM's global slot of that name).
//! - A table only grows: an id, once handed out, names the same string for the life of the
//!   table.

use std::collections::HashMap;

/// An interned global symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(pub u32);

/// The symbol table shared by compiler and VM: ids are dense indices into `names`.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    names: Vec<String>,
    ids: HashMap<String, SymbolId>,
}

impl SymbolTable {
    /// An empty table.
    pub fn new() -> SymbolTable {
        SymbolTable::default()
    }

    /// The id of `name`, interning it if new.
    pub fn intern(&mut self, name: &str) -> SymbolId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = SymbolId(self.names.len() as u32);
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// The id of `name` if it was interned.
    pub fn lookup(&self, name: &str) -> Option<SymbolId> {
        self.ids.get(name).copied()
    }

    /// The name of `id` (`"<unknown symbol>"` for an id not from this table).
    pub fn name(&self, id: SymbolId) -> &str {
        self.names
            .get(id.0 as usize)
            .map_or("<unknown symbol>", String::as_str)
    }

    /// Number of interned symbols.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no symbol is interned yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
