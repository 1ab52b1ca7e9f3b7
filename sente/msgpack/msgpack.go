// Package msgpack is the MessagePack packer of package sente: binary frames,
// subprotocol "sente.v1.msgpack".
//
//	s := sente.NewServer(sente.Options{Packer: msgpack.Packer{}})
//
// Values are packed by github.com/vmihailenco/msgpack/v5, set up so that the
// types an application wrote for the JSON packer pack alike: struct fields
// take their names from `msgpack` tags, else from `json` tags (omitempty and
// "-" included), and integers take the smallest encoding that holds them.
// Maps unpack into an interface value as map[string]any, as with JSON;
// integers unpack into an interface value as the sized Go type the wire
// carried (such as int8 or uint16), where JSON gives float64.
//
// A [sente.Raw] is a value packed already: [Packer.Marshal] passes it through,
// and [Packer.Unmarshal] into a *sente.Raw keeps the packed value as it is, as
// encoding/json does with json.RawMessage. (Inside a struct or map a
// sente.Raw is a []byte, packed as bin, as the JSON packer packs it as a
// base64 string; use msgpack.RawMessage of vmihailenco/msgpack there.) A
// *[]byte target unpacks a bin or str value into its bytes.
//
// Received frames are untrusted: [Packer.SplitArray] and [Packer.Unmarshal]
// first check that their input is exactly one well-formed value with no more
// than 100 levels of nested arrays and maps, and that no declared length runs
// past the end of the input, so that neither allocates nor recurses more
// than the input's size allows.
package msgpack

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	vm "github.com/vmihailenco/msgpack/v5"

	"github.com/wsasync/wsasync/sente"
)

// Packer packs sente frames as MessagePack. Its zero value is ready to use.
type Packer struct{}

var _ sente.Packer = Packer{}

// structTag is the tag struct fields are named by when they have no
// `msgpack` tag.
const structTag = "json"

// Name returns "msgpack".
func (Packer) Name() string { return "msgpack" }

// Binary returns true.
func (Packer) Binary() bool { return true }

// Marshal packs v. A sente.Raw is returned as it is (a copy of it), once
// checked to be one packed value; a nil one packs as nil.
func (Packer) Marshal(v any) ([]byte, error) {
	if r, ok := v.(sente.Raw); ok {
		if r == nil {
			return []byte{nilCode}, nil
		}
		if err := checkValue(r); err != nil {
			return nil, fmt.Errorf("msgpack: sente.Raw: %w", err)
		}
		return bytes.Clone(r), nil
	}
	var buf bytes.Buffer
	enc := vm.GetEncoder()
	enc.Reset(&buf)
	enc.SetCustomStructTag(structTag)
	enc.UseCompactInts(true)
	err := enc.Encode(v)
	enc.Reset(nil) // give the pool back an encoder without our settings
	vm.PutEncoder(enc)
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unmarshal unpacks data, which must be exactly one packed value, into the
// value v points to. Into a *sente.Raw it stores a copy of data itself.
func (Packer) Unmarshal(data []byte, v any) (err error) {
	if err := checkValue(data); err != nil {
		return err
	}
	if r, ok := v.(*sente.Raw); ok && r != nil {
		*r = append((*r)[:0], data...)
		return nil
	}
	// The input is well-formed, but what the library makes of it depends
	// on v's type (a map[any]any target and an array key, say); a panic
	// there must not take down a connection's goroutine.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("msgpack: unpacking into %T: %v", v, p)
		}
	}()
	rd := bytes.NewReader(data)
	dec := vm.GetDecoder()
	dec.Reset(rd)
	dec.SetCustomStructTag(structTag)
	err = dec.Decode(v)
	dec.Reset(nil)
	vm.PutDecoder(dec)
	if err == nil && rd.Len() != 0 {
		err = errTrailing // not expected: checkValue measured the value
	}
	return err
}

// AppendArray appends the array header for len(elems) elements (fixarray,
// array 16 or array 32), then the elements, which must be packed values.
func (Packer) AppendArray(dst []byte, elems ...[]byte) []byte {
	size := 5
	for _, e := range elems {
		size += len(e)
	}
	dst = appendArrayHeader(slices.Grow(dst, size), len(elems))
	for _, e := range elems {
		dst = append(dst, e...)
	}
	return dst
}

func appendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, fixarrayCode|byte(n))
	case n <= math.MaxUint16:
		return append(dst, array16Code, byte(n>>8), byte(n))
	case uint64(n) <= math.MaxUint32:
		return append(dst, array32Code, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	panic("msgpack: array of more than 2^32-1 elements")
}

// SplitArray returns the elements of the packed array data, each still
// packed. data must be exactly one array, well-formed throughout. The
// elements share data's memory (with their capacity cut to their length).
func (Packer) SplitArray(data []byte) ([][]byte, error) {
	if len(data) == 0 {
		return nil, errTruncated
	}
	var (
		n   uint64
		off int
	)
	switch c := data[0]; {
	case c&0xf0 == fixarrayCode:
		n, off = uint64(c&0x0f), 1
	case c == array16Code, c == array32Code:
		size := 2
		if c == array32Code {
			size = 4
		}
		var ok bool
		if n, ok = readUint(data, 1, size); !ok {
			return nil, errTruncated
		}
		off = 1 + size
	default:
		return nil, errNotArray
	}
	if n > uint64(len(data)-off) { // every value takes a byte at least
		return nil, errTooLong
	}
	out := make([][]byte, 0, n)
	for range n {
		k, err := skip(data[off:], 1)
		if err != nil {
			return nil, err
		}
		out = append(out, data[off:off+k:off+k])
		off += k
	}
	if off != len(data) {
		return nil, errTrailing
	}
	return out, nil
}
