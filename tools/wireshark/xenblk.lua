-- Wireshark / tshark dissector for xenblk traces: the pcap encoding of
-- docs/trace-format.md ("pcap encoding"), link type LINKTYPE_USER0 (147).
--
--   wireshark -X lua_script:tools/wireshark/xenblk.lua traces/recorded/persistent-qd1.pcap
--   tshark -r FILE.pcap -X lua_script:tools/wireshark/xenblk.lua -V
--   tshark -r FILE.pcap -X lua_script:tools/wireshark/xenblk.lua -T fields \
--          -e frame.number -e xenblk.kind -e xenblk.req.op -e xenblk.req.id -e xenblk.seg.gref
--
-- Every packet starts with kind (1 control, 2 ring request, 3 ring response),
-- format version (1 or 2, the file's) and vbd (u16 little-endian). Control
-- packets carry an event's canonical text line; ring requests a flags byte
-- (bit 0: hold; bit 1, version 2: indirect) and the request as it stands in
-- a ring slot, followed for an indirect request by its segment descriptors
-- (8 bytes each); ring responses the response as it stands in a ring slot.
-- The ABI follows from the size (112-byte requests and 16-byte responses:
-- native/x86_64; 108 and 12: x86_32); the protocol name is taken from the
-- latest `connect` of the packet's vbd.
--
-- Fields: xenblk.kind, .version, .vbd, .control, .event, .flags, .hold,
-- .indirect, .protocol, .req.op, .req.nr_segments, .req.handle, .req.id,
-- .req.sector, .req.nr_sectors (discard), .req.indirect_op,
-- .req.indirect_nr_segments, .req.page (indirect grefs), .req.seg (segments
-- and descriptors), .seg.gref, .seg.first_sect, .seg.last_sect, .rsp.id,
-- .rsp.op, .rsp.status, .rsp.status_name.

local xenblk = Proto("xenblk", "Xen blkif trace (xenblk-trace 1 and 2)")

local kinds = { [1] = "control", [2] = "ring request", [3] = "ring response" }
local ops = {
    [0] = "read", [1] = "write", [2] = "barrier", [3] = "flush",
    [4] = "reserved", [5] = "discard", [6] = "indirect",
}
local status_names = { [0] = "okay", [-1] = "error", [-2] = "eopnotsupp" }

local f = xenblk.fields
f.kind = ProtoField.uint8("xenblk.kind", "Kind", base.DEC, kinds)
f.version = ProtoField.uint8("xenblk.version", "Format version", base.DEC)
f.vbd = ProtoField.uint16("xenblk.vbd", "vbd", base.DEC)
f.control = ProtoField.string("xenblk.control", "Control text")
f.event = ProtoField.string("xenblk.event", "Event")
f.flags = ProtoField.uint8("xenblk.flags", "Flags", base.HEX)
f.hold = ProtoField.bool("xenblk.hold", "Hold (I/O stays in flight until complete)", 8, nil, 0x01)
f.indirect = ProtoField.bool("xenblk.indirect", "Indirect (descriptors follow the slot)", 8, nil, 0x02)
f.indirect_op = ProtoField.uint8("xenblk.req.indirect_op", "indirect_op", base.DEC, ops)
f.indirect_nr = ProtoField.uint16("xenblk.req.indirect_nr_segments", "nr_segments (indirect)", base.DEC)
f.page = ProtoField.uint32("xenblk.req.page", "Indirect page gref", base.DEC)
f.protocol = ProtoField.string("xenblk.protocol", "Protocol")
f.op = ProtoField.uint8("xenblk.req.op", "Operation", base.DEC, ops)
f.nr_segments = ProtoField.uint8("xenblk.req.nr_segments", "nr_segments", base.DEC)
f.handle = ProtoField.uint16("xenblk.req.handle", "Handle", base.DEC)
f.id = ProtoField.uint64("xenblk.req.id", "Id", base.DEC)
f.sector = ProtoField.uint64("xenblk.req.sector", "Sector number", base.DEC)
f.nr_sectors = ProtoField.uint64("xenblk.req.nr_sectors", "nr_sectors (discard)", base.DEC)
f.seg = ProtoField.string("xenblk.req.seg", "Segment")
f.gref = ProtoField.uint32("xenblk.seg.gref", "gref", base.DEC)
f.first_sect = ProtoField.uint8("xenblk.seg.first_sect", "first_sect", base.DEC)
f.last_sect = ProtoField.uint8("xenblk.seg.last_sect", "last_sect", base.DEC)
f.rsp_id = ProtoField.uint64("xenblk.rsp.id", "Id", base.DEC)
f.rsp_op = ProtoField.uint8("xenblk.rsp.op", "Operation", base.DEC, ops)
f.status = ProtoField.int16("xenblk.rsp.status", "Status", base.DEC)
f.status_name = ProtoField.string("xenblk.rsp.status_name", "Status name")

local e_malformed = ProtoExpert.new("xenblk.malformed", "Malformed xenblk packet", expert.group.MALFORMED, expert.severity.ERROR)
local e_lies = ProtoExpert.new("xenblk.lies", "Request field out of range", expert.group.PROTOCOL, expert.severity.WARN)
xenblk.experts = { e_malformed, e_lies }

-- The protocol of the latest connect per vbd, as of each frame (first pass),
-- so that re-dissection in the GUI shows the same names.
local latest_protocol = {}
local frame_protocol = {}

local function remember_connect(text, vbd)
    local protocol = text:match("%sprotocol=(%S+)") or "native"
    local named = tonumber(text:match("%svbd=(%d+)") or "0")
    latest_protocol[named] = protocol
end

local function protocol_name(pinfo, vbd, size_protocol)
    if not pinfo.visited then frame_protocol[pinfo.number] = latest_protocol[vbd] end
    local named = frame_protocol[pinfo.number]
    if named then return named end
    return size_protocol .. " (by size; no connect seen)"
end

local function dissect_control(tvb, pinfo, tree, vbd)
    local text = tvb:raw()
    tree:add(f.control, tvb())
    local keyword = text:match("^(%S+)") or ""
    tree:add(f.event, keyword)
    if keyword == "connect" and not pinfo.visited then remember_connect(" " .. text, vbd) end
    pinfo.cols.info:set(text)
end

-- One segment (8 bytes: gref, first_sect, last_sect, padding) under `tree`,
-- labelled; returns its canonical text.
local function add_segment(tree, s, label_suffix)
    local gref, first, last = s(0, 4):le_uint(), s(4, 1):uint(), s(5, 1):uint()
    local text = string.format("%d:%d-%d", gref, first, last)
    local seg = tree:add(f.seg, s, text .. label_suffix)
    seg:add_le(f.gref, s(0, 4))
    seg:add(f.first_sect, s(4, 1))
    seg:add(f.last_sect, s(5, 1))
    if last > 7 or last < first then seg:add_proto_expert_info(e_lies, "sectors outside the page or reversed") end
    return text
end

-- Version 2: an indirect request (flags bit 1). The slot is
-- blkif_request_indirect (64 bytes in both ABIs, the rest of the slot zero);
-- the descriptors follow the slot.
local function dissect_indirect(tvb, pinfo, tree, vbd, hold)
    local total = tvb:len() - 1
    local size, id_at, sector_at, handle_at, grefs_at, layout
    if total >= 112 and (total - 112) % 8 == 0 then
        size, id_at, sector_at, handle_at, grefs_at, layout = 112, 8, 16, 24, 28, "native/x86_64"
    elseif total >= 108 and (total - 108) % 8 == 0 then
        size, id_at, sector_at, handle_at, grefs_at, layout = 108, 4, 12, 20, 24, "x86_32"
    else
        tree:add_proto_expert_info(e_malformed, "an indirect request is a 112- or 108-byte slot and 8 bytes per descriptor, not " .. total .. " bytes")
        return
    end
    local slot = tvb(1, size)
    tree:add(f.protocol, slot, protocol_name(pinfo, vbd, layout))
    tree:add(f.op, slot(0, 1))
    tree:add(f.indirect_op, slot(1, 1))
    local nr = slot(2, 2):le_uint()
    local nr_item = tree:add_le(f.indirect_nr, slot(2, 2))
    if nr > 256 then nr_item:add_proto_expert_info(e_lies, "nr_segments above 256 (blkback's MAX_INDIRECT_SEGMENTS)") end
    tree:add_le(f.id, slot(id_at, 8))
    tree:add_le(f.sector, slot(sector_at, 8))
    tree:add_le(f.handle, slot(handle_at, 2))
    local inner = slot(1, 1):uint()
    local info = string.format("indirect id=%s op=%s sector=%s", tostring(slot(id_at, 8):le_uint64()),
        ops[inner] or tostring(inner), tostring(slot(sector_at, 8):le_uint64()))
    local count = (total - size) / 8
    for i = 0, count - 1 do
        info = info .. " seg=" .. add_segment(tree, tvb(1 + size + 8 * i, 8), " (descriptor " .. i .. ")")
    end
    if nr ~= count then info = info .. " nr=" .. nr end
    -- The pages up to those the descriptors fill or the last non-zero gref.
    local needed = math.floor((count + 511) / 512)
    local shown = needed
    for i = 0, 7 do
        if slot(grefs_at + 4 * i, 4):le_uint() ~= 0 and i + 1 > shown then shown = i + 1 end
    end
    for i = 0, shown - 1 do
        tree:add_le(f.page, slot(grefs_at + 4 * i, 4))
        info = info .. " page=" .. slot(grefs_at + 4 * i, 4):le_uint()
    end
    local handle = slot(handle_at, 2):le_uint()
    if handle ~= 0 then info = info .. " handle=" .. handle end
    if vbd ~= 0 then info = info .. " vbd=" .. vbd end
    if hold then info = info .. " hold" end
    pinfo.cols.info:set(info)
end

local function dissect_request(tvb, pinfo, tree, vbd)
    if tvb:len() < 1 then
        tree:add_proto_expert_info(e_malformed, "no flags byte")
        return
    end
    local flags = tree:add(f.flags, tvb(0, 1))
    flags:add(f.hold, tvb(0, 1))
    flags:add(f.indirect, tvb(0, 1))
    local hold = bit.band(tvb(0, 1):uint(), 1) == 1
    if bit.band(tvb(0, 1):uint(), 2) == 2 then
        dissect_indirect(tvb, pinfo, tree, vbd, hold)
        return
    end
    local slot = tvb(1)
    local size = slot:len()
    local id_at, sector_at, seg_at, layout
    if size == 112 then
        id_at, sector_at, seg_at, layout = 8, 16, 24, "native/x86_64"
    elseif size == 108 then
        id_at, sector_at, seg_at, layout = 4, 12, 20, "x86_32"
    else
        tree:add_proto_expert_info(e_malformed, "a ring request is 112 (native, x86_64) or 108 (x86_32) bytes, not " .. size)
        return
    end
    tree:add(f.protocol, slot, protocol_name(pinfo, vbd, layout))
    local op = slot(0, 1):uint()
    local nr = slot(1, 1):uint()
    tree:add(f.op, slot(0, 1))
    local nr_item = tree:add(f.nr_segments, slot(1, 1))
    tree:add_le(f.handle, slot(2, 2))
    tree:add_le(f.id, slot(id_at, 8))
    tree:add_le(f.sector, slot(sector_at, 8))
    local op_name = ops[op] or ("op" .. op)
    local info = string.format("request id=%s op=%s sector=%s", tostring(slot(id_at, 8):le_uint64()),
        op_name, tostring(slot(sector_at, 8):le_uint64()))
    if op == 5 then
        tree:add_le(f.nr_sectors, slot(seg_at, 8))
        info = info .. " nr-sectors=" .. tostring(slot(seg_at, 8):le_uint64())
    else
        if nr > 11 then nr_item:add_proto_expert_info(e_lies, "nr_segments above 11 (BLKIF_MAX_SEGMENTS_PER_REQUEST)") end
        -- The segments the backend looks at, and any non-zero slot after them.
        local shown = math.min(nr, 11)
        for i = 0, 10 do
            local s = slot(seg_at + 8 * i, 8)
            if s(0, 4):le_uint() ~= 0 or s(4, 1):uint() ~= 0 or s(5, 1):uint() ~= 0 then
                if i + 1 > shown then shown = i + 1 end
            end
        end
        for i = 0, shown - 1 do
            local s = slot(seg_at + 8 * i, 8)
            info = info .. " seg=" .. add_segment(tree, s, i >= nr and " (beyond nr_segments)" or "")
        end
        if nr ~= shown then info = info .. " nr=" .. nr end
    end
    if vbd ~= 0 then info = info .. " vbd=" .. vbd end
    if hold then info = info .. " hold" end
    pinfo.cols.info:set(info)
end

local function dissect_response(tvb, pinfo, tree, vbd)
    local size = tvb:len()
    local layout
    if size == 16 then layout = "native/x86_64" elseif size == 12 then layout = "x86_32" else
        tree:add_proto_expert_info(e_malformed, "a ring response is 16 (native, x86_64) or 12 (x86_32) bytes, not " .. size)
        return
    end
    tree:add(f.protocol, tvb(), protocol_name(pinfo, vbd, layout))
    tree:add_le(f.rsp_id, tvb(0, 8))
    tree:add(f.rsp_op, tvb(8, 1))
    tree:add_le(f.status, tvb(10, 2))
    local status = tvb(10, 2):le_int()
    local name = status_names[status]
    if name then tree:add(f.status_name, tvb(10, 2), name) else
        tree:add_proto_expert_info(e_malformed, "status " .. status .. " is not a BLKIF_RSP")
        name = tostring(status)
    end
    local info = string.format("response id=%s status=%s", tostring(tvb(0, 8):le_uint64()), name)
    if vbd ~= 0 then info = info .. " vbd=" .. vbd end
    pinfo.cols.info:set(info)
end

function xenblk.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol:set("XENBLK")
    local subtree = tree:add(xenblk, tvb(), "xenblk trace event")
    if tvb:len() < 4 then
        subtree:add_proto_expert_info(e_malformed, "shorter than the 4-byte header")
        return
    end
    subtree:add(f.kind, tvb(0, 1))
    subtree:add(f.version, tvb(1, 1))
    subtree:add_le(f.vbd, tvb(2, 2))
    local kind, version, vbd = tvb(0, 1):uint(), tvb(1, 1):uint(), tvb(2, 2):le_uint()
    if version ~= 1 and version ~= 2 then
        subtree:add_proto_expert_info(e_malformed, "unknown format version " .. version)
        return
    end
    local body = tvb:len() > 4 and tvb(4):tvb() or ByteArray.new():tvb("empty")
    if kind == 1 then
        dissect_control(body, pinfo, subtree, vbd)
    elseif kind == 2 then
        dissect_request(body, pinfo, subtree, vbd)
    elseif kind == 3 then
        dissect_response(body, pinfo, subtree, vbd)
    else
        subtree:add_proto_expert_info(e_malformed, "unknown kind " .. kind)
    end
end

local encap = (wtap_encaps and wtap_encaps.USER0) or wtap.USER0
DissectorTable.get("wtap_encap"):add(encap, xenblk)
