package sente

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// A Packer turns values into frames and back. Both ends of a connection must
// use the same one; over WebSocket it is chosen by subprotocol
// ("sente.v1."+Name()).
//
// Packed values are spliced into arrays without being decoded again, so a
// batch of pushes is packed once whatever the number of its receivers.
type Packer interface {
	// Name is the packer's name in the subprotocol, such as "json".
	Name() string
	// Binary reports whether frames are binary (otherwise text).
	Binary() bool
	// Marshal packs a Go value.
	Marshal(v any) ([]byte, error)
	// Unmarshal unpacks data into the Go value v points to.
	Unmarshal(data []byte, v any) error
	// AppendArray appends to dst the array whose elements are the given
	// packed values.
	AppendArray(dst []byte, elems ...[]byte) []byte
	// SplitArray returns the packed elements of the array data, or an
	// error if data is not an array.
	SplitArray(data []byte) ([][]byte, error)
}

// JSON is the default packer: text frames of JSON.
type JSON struct{}

// Name returns "json".
func (JSON) Name() string { return "json" }

// Binary returns false.
func (JSON) Binary() bool { return false }

// Marshal is json.Marshal.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal is json.Unmarshal, with a fast path for a plain string (no
// escapes) into a *string, the shape of every event id and callback id.
func (JSON) Unmarshal(data []byte, v any) error {
	if sp, ok := v.(*string); ok && len(data) >= 2 && data[0] == '"' && data[len(data)-1] == '"' {
		inner := data[1 : len(data)-1]
		if bytes.IndexByte(inner, '\\') < 0 && bytes.IndexByte(inner, '"') < 0 && utf8.Valid(inner) && !hasControl(inner) {
			*sp = string(inner)
			return nil
		}
	}
	return json.Unmarshal(data, v)
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// AppendArray writes [e0,e1,...].
func (JSON) AppendArray(dst []byte, elems ...[]byte) []byte {
	dst = append(dst, '[')
	for i, e := range elems {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e...)
	}
	return append(dst, ']')
}

var errNotArray = errors.New("not an array")

var errInvalidJSON = errors.New("invalid JSON")

// SplitArray returns the elements of a JSON array as sub-slices of data,
// without copying: it checks the whole array once, then cuts it at the
// commas of its top level.
func (JSON) SplitArray(data []byte) ([][]byte, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '[' {
		return nil, errNotArray
	}
	if !json.Valid(data) {
		return nil, errInvalidJSON
	}
	body := data[1 : len(data)-1] // valid, so it ends with ']'
	if len(bytes.TrimSpace(body)) == 0 {
		return [][]byte{}, nil
	}
	var (
		out   = make([][]byte, 0, 2)
		depth int
		inStr bool
		esc   bool
		start int
	)
	for i, c := range body {
		switch {
		case esc:
			esc = false
		case inStr:
			switch c {
			case '\\':
				esc = true
			case '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		case c == ',' && depth == 0:
			out = append(out, bytes.TrimSpace(body[start:i]))
			start = i + 1
		}
	}
	return append(out, bytes.TrimSpace(body[start:])), nil
}
