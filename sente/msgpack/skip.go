package msgpack

import (
	"errors"
)

// MessagePack format bytes this package reads or writes itself.
const (
	nilCode      = 0xc0
	fixarrayCode = 0x90
	array16Code  = 0xdc
	array32Code  = 0xdd
)

// MaxDepth is how many arrays and maps may nest in a value this package
// unpacks (the frame's own envelope and event arrays included).
const MaxDepth = 100

var (
	errNotArray  = errors.New("msgpack: not an array")
	errTruncated = errors.New("msgpack: truncated value")
	errTooLong   = errors.New("msgpack: declared length exceeds the input")
	errTooDeep   = errors.New("msgpack: arrays and maps nested too deep")
	errTrailing  = errors.New("msgpack: bytes after the value")
	errNeverUsed = errors.New("msgpack: format byte 0xc1 is never used")
	errTimestamp = errors.New("msgpack: malformed timestamp")
)

// checkValue checks that data is exactly one well-formed value.
func checkValue(data []byte) error {
	n, err := skip(data, 0)
	if err != nil {
		return err
	}
	if n != len(data) {
		return errTrailing
	}
	return nil
}

// readUint reads the size-byte big-endian unsigned integer at b[off:].
func readUint(b []byte, off, size int) (uint64, bool) {
	if len(b) < off+size {
		return 0, false
	}
	var n uint64
	for _, c := range b[off : off+size] {
		n = n<<8 | uint64(c)
	}
	return n, true
}

// skip returns the length of the value at the start of b, checking it
// throughout. depth is the number of arrays and maps around it. Every
// value takes a byte at least, so no count is believed beyond the bytes
// left, and the work is bounded by len(b) (and the recursion by MaxDepth).
func skip(b []byte, depth int) (int, error) {
	if len(b) == 0 {
		return 0, errTruncated
	}
	switch c := b[0]; {
	case c <= 0x7f, c >= 0xe0: // positive and negative fixint
		return 1, nil
	case c <= 0x8f: // fixmap
		return skipValues(b, 1, 2*uint64(c&0x0f), depth)
	case c <= 0x9f: // fixarray
		return skipValues(b, 1, uint64(c&0x0f), depth)
	case c <= 0xbf: // fixstr
		return skipBytes(b, 1, uint64(c&0x1f))
	}
	switch c := b[0]; c {
	case nilCode, 0xc2, 0xc3: // nil, false, true
		return 1, nil
	case 0xc1:
		return 0, errNeverUsed
	case 0xc4, 0xd9: // bin 8, str 8
		return skipSized(b, 1)
	case 0xc5, 0xda: // bin 16, str 16
		return skipSized(b, 2)
	case 0xc6, 0xdb: // bin 32, str 32
		return skipSized(b, 4)
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32: length, type, data
		size := 1 << (c - 0xc7)
		n, ok := readUint(b, 1, size)
		if !ok {
			return 0, errTruncated
		}
		return skipExt(b, 1+size, n)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type, data
		return skipExt(b, 1, 1<<(c-0xd4))
	case 0xca: // float 32
		return fixed(b, 5)
	case 0xcb: // float 64
		return fixed(b, 9)
	case 0xcc, 0xd0: // uint 8, int 8
		return fixed(b, 2)
	case 0xcd, 0xd1: // uint 16, int 16
		return fixed(b, 3)
	case 0xce, 0xd2: // uint 32, int 32
		return fixed(b, 5)
	case 0xcf, 0xd3: // uint 64, int 64
		return fixed(b, 9)
	case array16Code, array32Code:
		size := 2 << (c - array16Code)
		n, ok := readUint(b, 1, size)
		if !ok {
			return 0, errTruncated
		}
		return skipValues(b, 1+size, n, depth)
	default: // 0xde, 0xdf: map 16, map 32
		size := 2 << (c - 0xde)
		n, ok := readUint(b, 1, size)
		if !ok {
			return 0, errTruncated
		}
		return skipValues(b, 1+size, 2*n, depth)
	}
}

// fixed is the length n of a value of fixed size.
func fixed(b []byte, n int) (int, error) {
	if len(b) < n {
		return 0, errTruncated
	}
	return n, nil
}

// skipSized skips a str or bin whose length takes size bytes.
func skipSized(b []byte, size int) (int, error) {
	n, ok := readUint(b, 1, size)
	if !ok {
		return 0, errTruncated
	}
	return skipBytes(b, 1+size, n)
}

// skipBytes is the length of a header of hdr bytes and n bytes of data.
func skipBytes(b []byte, hdr int, n uint64) (int, error) {
	if n > uint64(len(b)-hdr) {
		return 0, errTooLong
	}
	return hdr + int(n), nil
}

// skipExt skips an extension whose type byte is at b[typ] and whose n
// bytes of data follow it. The timestamp extension (type -1) is checked.
func skipExt(b []byte, typ int, n uint64) (int, error) {
	if len(b) <= typ {
		return 0, errTruncated
	}
	end, err := skipBytes(b, typ+1, n)
	if err != nil {
		return 0, err
	}
	if int8(b[typ]) == -1 {
		data := b[typ+1 : end]
		var nsec uint64
		switch len(data) {
		case 4: // seconds only
		case 8: // 30 bits of nanoseconds, 34 of seconds
			nsec, _ = readUint(data, 0, 4)
			nsec >>= 2
		case 12: // 32 bits of nanoseconds, 64 of seconds
			nsec, _ = readUint(data, 0, 4)
		default:
			return 0, errTimestamp
		}
		if nsec > 999_999_999 {
			return 0, errTimestamp
		}
	}
	return end, nil
}

// skipValues skips a container of n values after a header of hdr bytes.
func skipValues(b []byte, hdr int, n uint64, depth int) (int, error) {
	if depth >= MaxDepth {
		return 0, errTooDeep
	}
	if n > uint64(len(b)-hdr) {
		return 0, errTooLong
	}
	off := hdr
	for range n {
		k, err := skip(b[off:], depth+1)
		if err != nil {
			return 0, err
		}
		off += k
	}
	return off, nil
}
