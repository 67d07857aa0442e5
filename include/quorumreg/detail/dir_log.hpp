// The directory store's on-disk format: one log file of CRC-checked frames.
//
//   frame   := magic u32le 'QRLG' | payload length u32le | crc32c(payload) u32le | payload
//   payload := entry*                       (one frame = one atomic change)
//   entry   := 1 snapshot | 2 txn | 3 lease grant | 4 keep-alive | 5 lease revoke
// A grant or keep-alive carries the lease's renewal stamp (u64, "expiry_ms": the writer's
// clock + TTL, strictly increasing per lease); readers use it only to see that a renewal
// happened, never as a time (issue 15, defect 10: the writers' wall clocks may disagree).
//
// The first frame of the file is a snapshot (the whole state and the watch history kept
// across compaction, and since format version 2 the store's identity); every later frame is
// applied to it in order. A frame that is short or fails its CRC with no valid frame after it
// is the torn tail of an append that never completed (and was never acknowledged): readers
// stop there and the next writer truncates it. A bad frame FOLLOWED by a valid one cannot be
// a torn append (every append is fsynced before the next one starts): that is corruption of
// acknowledged data, and the log is refused (dir_find_valid_frame).
#pragma once

#include <quorumreg/detail/codec.hpp>
#include <quorumreg/detail/store_state.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace quorumreg::detail {

inline constexpr std::uint32_t dir_frame_magic = 0x474C5251; // "QRLG" little-endian
inline constexpr std::size_t dir_frame_header = 12;
inline constexpr std::uint32_t dir_max_frame = 1u << 30;
/// Version 2 added the store identity to the snapshot; version 1 logs are still read, with
/// an empty identity (they had none, and "" stays stable across their compactions).
inline constexpr std::uint8_t dir_format_version = 2;

enum class dir_entry_type : std::uint8_t { snapshot = 1, txn = 2, grant = 3, keep_alive = 4, revoke = 5 };

/// One decoded log entry (fields used depend on the type).
struct dir_entry {
    dir_entry_type type = dir_entry_type::txn;
    store_revision rev = 0;
    std::vector<store_mutation> muts;
    lease_id lease = 0;
    std::int64_t ttl_ms = 0;
    std::int64_t expiry_ms = 0;
};

/// A decoded snapshot: state, the clock leases are measured on, and kept history.
struct dir_snapshot {
    std::uint8_t version = 0;
    std::uint8_t clock = 0;
    std::string identity; ///< random hex id written at creation ("" in version 1 logs)
    store_state state;
    store_history history;
};

inline std::string dir_frame(std::string_view payload) {
    std::string out;
    out.reserve(dir_frame_header + payload.size());
    byte_writer w(out);
    w.u32le(dir_frame_magic);
    w.u32le(static_cast<std::uint32_t>(payload.size()));
    w.u32le(crc32c(payload));
    w.raw(payload);
    return out;
}

/// Result of looking at bytes where a frame should start.
enum class dir_frame_status { ok, incomplete, bad };

/// Parses the frame at the start of `in`: on ok, `payload` and `size` (header + payload).
inline dir_frame_status dir_parse_frame(std::string_view in, std::string_view& payload, std::size_t& size) {
    if (in.size() < dir_frame_header) return dir_frame_status::incomplete;
    byte_reader r(in.substr(0, dir_frame_header));
    auto magic = r.u32le();
    auto len = r.u32le();
    auto crc = r.u32le();
    if (magic != dir_frame_magic || len > dir_max_frame) return dir_frame_status::bad;
    if (in.size() - dir_frame_header < len) return dir_frame_status::incomplete;
    payload = in.substr(dir_frame_header, len);
    if (crc32c(payload) != crc) return dir_frame_status::bad;
    size = dir_frame_header + len;
    return dir_frame_status::ok;
}

/// Offset (from the start of `in`) of the first frame after offset 0 that parses and whose
/// entries decode, or npos. Used on the bytes from a bad frame on: a valid frame after a bad
/// one means the bad one is damaged acknowledged data, not a torn tail. (A value that itself
/// holds a complete frame can make a torn tail look like that; the log is then refused rather
/// than cut — the safe side.)
inline std::size_t dir_find_valid_frame(std::string_view in) {
    for (std::size_t at = 1; at + dir_frame_header <= in.size(); ++at) {
        if (in[at] != 'Q') continue;
        std::string_view payload;
        std::size_t size = 0;
        auto rest = in.substr(at);
        if (dir_parse_frame(rest, payload, size) != dir_frame_status::ok) continue;
        byte_reader r(payload);
        auto type = r.u8();
        if (!r.ok() || type < static_cast<std::uint8_t>(dir_entry_type::txn) ||
            type > static_cast<std::uint8_t>(dir_entry_type::revoke))
            continue;
        return at;
    }
    return std::string_view::npos;
}

inline void dir_put_mutations(byte_writer& w, const std::vector<store_mutation>& muts) {
    w.varint(muts.size());
    for (const auto& m : muts) {
        w.u8(m.erase ? 1 : 0);
        w.str(m.key);
        if (!m.erase) {
            w.str(m.value);
            w.varint(static_cast<std::uint64_t>(m.lease));
        }
    }
}

inline void dir_put_txn(std::string& out, store_revision rev, const std::vector<store_mutation>& muts) {
    byte_writer w(out);
    w.u8(static_cast<std::uint8_t>(dir_entry_type::txn));
    w.varint(static_cast<std::uint64_t>(rev));
    dir_put_mutations(w, muts);
}

inline void dir_put_grant(std::string& out, lease_id id, std::int64_t ttl_ms, std::int64_t expiry_ms) {
    byte_writer w(out);
    w.u8(static_cast<std::uint8_t>(dir_entry_type::grant));
    w.varint(static_cast<std::uint64_t>(id));
    w.varint(static_cast<std::uint64_t>(ttl_ms));
    w.u64le(static_cast<std::uint64_t>(expiry_ms));
}

inline void dir_put_keep_alive(std::string& out, lease_id id, std::int64_t expiry_ms) {
    byte_writer w(out);
    w.u8(static_cast<std::uint8_t>(dir_entry_type::keep_alive));
    w.varint(static_cast<std::uint64_t>(id));
    w.u64le(static_cast<std::uint64_t>(expiry_ms));
}

inline void dir_put_revoke(std::string& out, lease_id id) {
    byte_writer w(out);
    w.u8(static_cast<std::uint8_t>(dir_entry_type::revoke));
    w.varint(static_cast<std::uint64_t>(id));
}

inline void dir_put_kv(byte_writer& w, const key_value& kv) {
    w.str(kv.key);
    w.str(kv.value);
    w.varint(static_cast<std::uint64_t>(kv.create_revision));
    w.varint(static_cast<std::uint64_t>(kv.mod_revision));
    w.varint(static_cast<std::uint64_t>(kv.version));
    w.varint(static_cast<std::uint64_t>(kv.lease));
}

inline key_value dir_get_kv(byte_reader& r) {
    key_value kv;
    kv.key = std::string(r.str());
    kv.value = std::string(r.str());
    kv.create_revision = static_cast<store_revision>(r.varint());
    kv.mod_revision = static_cast<store_revision>(r.varint());
    kv.version = static_cast<std::int64_t>(r.varint());
    kv.lease = static_cast<lease_id>(r.varint());
    return kv;
}

/// Encodes the whole state plus the history events from `history_from` on.
inline std::string dir_snapshot_payload(std::uint8_t clock, std::string_view identity, const store_state& st,
                                        const store_history& h, store_revision history_from) {
    std::string out;
    byte_writer w(out);
    w.u8(static_cast<std::uint8_t>(dir_entry_type::snapshot));
    w.u8(dir_format_version);
    w.u8(clock);
    w.str(identity);
    w.varint(static_cast<std::uint64_t>(st.rev));
    w.varint(static_cast<std::uint64_t>(st.next_lease));
    w.varint(static_cast<std::uint64_t>(history_from));
    w.varint(st.kvs.size());
    for (const auto& [k, kv] : st.kvs)
        dir_put_kv(w, kv);
    w.varint(st.leases.size());
    for (const auto& [id, l] : st.leases) {
        w.varint(static_cast<std::uint64_t>(id));
        w.varint(static_cast<std::uint64_t>(l.ttl_ms));
        w.u64le(static_cast<std::uint64_t>(l.expiry_ms));
    }
    std::vector<const watch_event*> kept;
    for (const auto& e : h.events)
        if (e.revision >= history_from) kept.push_back(&e);
    w.varint(kept.size());
    for (const auto* e : kept) {
        w.u8(e->what == watch_event::kind::erase ? 1 : 0);
        w.varint(static_cast<std::uint64_t>(e->revision));
        dir_put_kv(w, e->kv);
    }
    return out;
}

/// Decodes a snapshot payload. False on malformed or newer-format input (ec says which).
inline bool dir_decode_snapshot(std::string_view payload, dir_snapshot& out, std::error_code& ec) {
    byte_reader r(payload);
    if (r.u8() != static_cast<std::uint8_t>(dir_entry_type::snapshot)) {
        ec = errc::corrupt_data;
        return false;
    }
    auto version = r.u8();
    if (r.ok() && (version < 1 || version > dir_format_version)) {
        ec = errc::unsupported_version;
        return false;
    }
    out.version = version;
    out.clock = r.u8();
    if (version >= 2) out.identity = std::string(r.str());
    out.state.rev = static_cast<store_revision>(r.varint());
    out.state.next_lease = static_cast<lease_id>(r.varint());
    out.history.first_available = static_cast<store_revision>(r.varint());
    auto nkv = r.count(6);
    for (std::uint64_t i = 0; i < nkv && r.ok(); ++i) {
        auto kv = dir_get_kv(r);
        auto key = kv.key;
        out.state.kvs.emplace(std::move(key), std::move(kv));
    }
    auto nl = r.count(10);
    for (std::uint64_t i = 0; i < nl && r.ok(); ++i) {
        store_lease l;
        l.id = static_cast<lease_id>(r.varint());
        l.ttl_ms = static_cast<std::int64_t>(r.varint());
        l.expiry_ms = static_cast<std::int64_t>(r.u64le());
        out.state.leases.emplace(l.id, std::move(l));
    }
    for (const auto& [k, kv] : out.state.kvs)
        if (kv.lease != 0) {
            auto it = out.state.leases.find(kv.lease);
            if (it != out.state.leases.end()) it->second.keys.insert(k);
        }
    auto ne = r.count(8);
    for (std::uint64_t i = 0; i < ne && r.ok(); ++i) {
        watch_event e;
        e.what = r.u8() ? watch_event::kind::erase : watch_event::kind::put;
        e.revision = static_cast<store_revision>(r.varint());
        e.kv = dir_get_kv(r);
        out.history.events.push_back(std::move(e));
    }
    if (!r.ok() || r.remaining() != 0) {
        ec = errc::corrupt_data;
        return false;
    }
    return true;
}

/// Decodes the entries of a non-snapshot frame.
inline bool dir_decode_entries(std::string_view payload, std::vector<dir_entry>& out, std::error_code& ec) {
    byte_reader r(payload);
    while (r.ok() && r.remaining() > 0) {
        dir_entry e;
        e.type = static_cast<dir_entry_type>(r.u8());
        switch (e.type) {
        case dir_entry_type::txn: {
            e.rev = static_cast<store_revision>(r.varint());
            auto n = r.count(2);
            for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
                store_mutation m;
                m.erase = r.u8() != 0;
                m.key = std::string(r.str());
                if (!m.erase) {
                    m.value = std::string(r.str());
                    m.lease = static_cast<lease_id>(r.varint());
                }
                e.muts.push_back(std::move(m));
            }
            break;
        }
        case dir_entry_type::grant:
            e.lease = static_cast<lease_id>(r.varint());
            e.ttl_ms = static_cast<std::int64_t>(r.varint());
            e.expiry_ms = static_cast<std::int64_t>(r.u64le());
            break;
        case dir_entry_type::keep_alive:
            e.lease = static_cast<lease_id>(r.varint());
            e.expiry_ms = static_cast<std::int64_t>(r.u64le());
            break;
        case dir_entry_type::revoke: e.lease = static_cast<lease_id>(r.varint()); break;
        default: r.fail(); break;
        }
        if (r.ok()) out.push_back(std::move(e));
    }
    if (!r.ok()) {
        ec = errc::corrupt_data;
        return false;
    }
    return true;
}

/// Applies decoded entries to the state and history (the same code for the writer and every
/// reader, so all processes compute identical states). `observed_ms` is the applying process's
/// steady_clock now: a grant or keep-alive seen now restarts that lease's time for this
/// process (the only per-process part of the state).
inline void dir_apply_entries(const std::vector<dir_entry>& entries, store_state& st, store_history& h,
                              std::int64_t observed_ms) {
    for (const auto& e : entries) {
        switch (e.type) {
        case dir_entry_type::txn: {
            std::vector<watch_event> evs;
            st.apply(e.rev, e.muts, &evs);
            h.append(evs);
            break;
        }
        case dir_entry_type::grant: {
            store_lease l;
            l.id = e.lease;
            l.ttl_ms = e.ttl_ms;
            l.expiry_ms = e.expiry_ms;
            l.observed_ms = observed_ms;
            st.leases[e.lease] = std::move(l);
            st.next_lease = std::max(st.next_lease, e.lease + 1);
            break;
        }
        case dir_entry_type::keep_alive: {
            auto it = st.leases.find(e.lease);
            if (it != st.leases.end()) {
                it->second.expiry_ms = e.expiry_ms;
                it->second.observed_ms = observed_ms;
            }
            break;
        }
        case dir_entry_type::revoke: st.leases.erase(e.lease); break;
        case dir_entry_type::snapshot: break;
        }
    }
}

} // namespace quorumreg::detail
