//! The only unsafe code of the crate (and of the workspace's libvirt use): bulk domain stats
//! through `virt::sys`, because the `virt` 0.5.0 wrapper leaks every record and hands out raw
//! pointers (records are decoded into owned Rust values and freed with
//! `virDomainStatsRecordListFree` before returning), and `virDomainAbortJob`, which `virt`
//! 0.5.0 does not wrap.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ptr;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error;
use virt::sys;

/// One typed parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    /// INT or LLONG.
    Int(i64),
    /// UINT or ULLONG.
    UInt(u64),
    /// DOUBLE.
    Double(f64),
    /// BOOLEAN.
    Bool(bool),
    /// STRING (lossy UTF-8).
    Str(String),
}

impl Param {
    /// The value as an unsigned integer, if it is a non-negative number.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Param::Int(v) => u64::try_from(*v).ok(),
            Param::UInt(v) => Some(*v),
            Param::Double(v) if *v >= 0.0 && v.is_finite() => Some(*v as u64),
            _ => None,
        }
    }
}

/// One domain's record: an owned reference to the domain plus its decoded parameters.
pub(crate) struct StatsRecord {
    pub(crate) dom: Domain,
    pub(crate) params: BTreeMap<String, Param>,
}

/// Frees the record list however the decoding loop is left.
struct ListGuard(*mut sys::virDomainStatsRecordPtr);

impl Drop for ListGuard {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a successful virConnectGetAllDomainStats call and is
            // freed exactly once, here; nothing decoded from it outlives this guard (strings
            // were copied and every domain kept got its own reference).
            unsafe { sys::virDomainStatsRecordListFree(self.0) };
        }
    }
}

/// `virConnectGetAllDomainStats(conn, stats, flags)`, decoded. Without the ENFORCE flag a
/// driver returns the groups it supports and silently omits the rest.
pub(crate) fn all_domain_stats(
    conn: &Connect,
    stats: u32,
    flags: u32,
) -> Result<Vec<StatsRecord>, Error> {
    let mut list: *mut sys::virDomainStatsRecordPtr = ptr::null_mut();
    // SAFETY: `conn` is a live connection for the duration of the call (borrowed); `list` is a
    // valid out-pointer that libvirt fills with a NULL-terminated array it allocates.
    let n = unsafe { sys::virConnectGetAllDomainStats(conn.as_ptr(), stats, &mut list, flags) };
    let guard = ListGuard(list);
    if n < 0 {
        return Err(Error::last_error());
    }
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    if guard.0.is_null() {
        return Ok(out);
    }
    for i in 0..usize::try_from(n).unwrap_or(0) {
        // SAFETY: libvirt returned `n` records, so indexes 0..n are within the array.
        let rec = unsafe { *guard.0.add(i) };
        if rec.is_null() {
            continue;
        }
        // SAFETY: a non-NULL record pointer from the list points to a valid record until the
        // list is freed by the guard, after this loop.
        let rec = unsafe { &*rec };
        if rec.dom.is_null() {
            continue;
        }
        // SAFETY: `rec.dom` is a valid domain; taking our own reference first means the
        // `Domain` we build owns one count and stays valid after the list is freed.
        if unsafe { sys::virDomainRef(rec.dom) } < 0 {
            continue;
        }
        // SAFETY: we own the reference taken just above.
        let dom = unsafe { Domain::from_ptr(rec.dom) };
        out.push(StatsRecord {
            dom,
            params: decode_params(rec.params, rec.nparams),
        });
    }
    drop(guard);
    Ok(out)
}

fn decode_params(params: sys::virTypedParameterPtr, n: i32) -> BTreeMap<String, Param> {
    let mut out = BTreeMap::new();
    if params.is_null() {
        return out;
    }
    for i in 0..usize::try_from(n).unwrap_or(0) {
        // SAFETY: the record holds `nparams` parameters at `params`, valid until the list is
        // freed (after the caller's loop).
        let p = unsafe { &*params.add(i) };
        // The field is NUL-terminated within its 80 bytes; stop at the array end regardless.
        let field: Vec<u8> = p
            .field
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        let field = String::from_utf8_lossy(&field).into_owned();
        // SAFETY: `type_` says which union member libvirt wrote; only that one is read, and a
        // STRING's pointer is checked for NULL and copied before the list is freed.
        let value = unsafe {
            match u32::try_from(p.type_).unwrap_or(0) {
                sys::VIR_TYPED_PARAM_INT => Param::Int(i64::from(p.value.i)),
                sys::VIR_TYPED_PARAM_UINT => Param::UInt(u64::from(p.value.ui)),
                sys::VIR_TYPED_PARAM_LLONG => Param::Int(p.value.l),
                sys::VIR_TYPED_PARAM_ULLONG => Param::UInt(p.value.ul),
                sys::VIR_TYPED_PARAM_DOUBLE => Param::Double(p.value.d),
                sys::VIR_TYPED_PARAM_BOOLEAN => Param::Bool(p.value.b != 0),
                sys::VIR_TYPED_PARAM_STRING if !p.value.s.is_null() => Param::Str(
                    std::ffi::CStr::from_ptr(p.value.s)
                        .to_string_lossy()
                        .into_owned(),
                ),
                _ => continue,
            }
        };
        out.insert(field, value);
    }
    out
}

/// `virDomainAbortJob(dom)`: aborts the domain's current job (a migration), whose blocked
/// call then fails with "operation aborted".
pub(crate) fn abort_job(dom: &Domain) -> Result<(), Error> {
    // SAFETY: `dom` owns a live reference to the domain for the whole call (it is borrowed, so
    // it cannot be dropped meanwhile); virDomainAbortJob only reads the pointer and is
    // thread-safe in libvirt, which is why it may run while a migration blocks on another
    // thread.
    let rc = unsafe { sys::virDomainAbortJob(dom.as_ptr()) };
    if rc < 0 {
        Err(Error::last_error())
    } else {
        Ok(())
    }
}
