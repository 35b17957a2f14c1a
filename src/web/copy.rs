//! The exporter's side of the copy kept for the next load: writing or removing it when the
//! engine asks (once the state is released and the requests are sent), and claiming what
//! earlier loads stored. `storage.rs` holds `localStorage` and the Web Lock themselves.

use super::host::now_ms;
use super::shell::{drive, Shared, Shell};
use super::storage;
use crate::engine::stored_copy_deflated;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// Writes the engine's copy for the next load (`text`, with its mark), or removes it (`None`),
/// unless another tab's exporter claimed the last one written while this page still runs (its
/// last writes at page-hide can come after the other's first read): what it took is its to
/// send, and must not be stored again for yet another load to take. Then the engine makes a
/// copy without it, and this returns `true`: [`drive`] must pass again.
pub fn store(shared: &Shared, text: Option<(String, u64)>) -> bool {
    let (store, written) = match shared.try_borrow() {
        Ok(shell) => match shell.store.clone() {
            Some(store) => (store, shell.written),
            None => return false,
        },
        Err(_) => return false,
    };
    let result = match (&text, written) {
        (Some(_), Some(mark)) if matches!(store.holds_own(), Ok(false)) => {
            if let Ok(mut shell) = shared.try_borrow_mut() {
                shell.written = None;
                shell.engine.handle_stored_copy_taken(mark, now_ms());
            }
            return true;
        }
        (Some((text, mark)), _) => store.write(text).map(|()| Some(*mark)),
        (None, Some(_)) => store.remove().map(|()| None),
        (None, None) => return false,
    };
    if let Ok(mut shell) = shared.try_borrow_mut() {
        match result {
            Ok(written) => shell.written = written,
            Err(_) => shell.storage_failed(),
        }
    }
    false
}

/// Reads what earlier loads of the endpoint stored and hands it to the engine, once the Web
/// Lock is granted and deflated events are inflated (see [`Store::claim`]).
pub fn claim(shared: &Shared) {
    let store = match shared.try_borrow() {
        Ok(shell) => shell.store.clone(),
        Err(_) => return,
    };
    let Some(store) = store else {
        return;
    };
    let taker = Rc::downgrade(shared);
    let counter = Rc::downgrade(shared);
    store.claim(
        move |texts| Box::pin(take_stored(taker, texts)),
        move |failures| {
            if let Some(shared) = counter.upgrade() {
                if let Ok(mut shell) = shared.try_borrow_mut() {
                    for _ in 0..failures {
                        shell.storage_failed();
                    }
                }
                drive(&shared);
            }
        },
    );
}

/// Takes `texts` in: deflated events inflated first by the host's `DecompressionStream`.
/// `false` if the exporter is gone (the texts stay stored for the next load).
async fn take_stored(shell: Weak<RefCell<Shell>>, texts: Vec<String>) -> bool {
    let mut inflated = Vec::with_capacity(texts.len());
    for text in &texts {
        let mut parts = Vec::new();
        for bytes in stored_copy_deflated(text) {
            parts.push(storage::inflate(bytes).await);
        }
        inflated.push(parts);
    }
    let Some(shared) = shell.upgrade() else {
        return false;
    };
    let taken = match shared.try_borrow_mut() {
        Ok(mut shell) => {
            let now = now_ms();
            let before = shell.engine.stats().storage_errors;
            for (text, lines) in texts.iter().zip(&inflated) {
                shell.engine.handle_restore(text, lines, now);
            }
            if shell.engine.stats().storage_errors > before {
                shell.storage_warning.get_or_insert(true);
            }
            true
        }
        Err(_) => false,
    };
    drive(&shared);
    taken
}
