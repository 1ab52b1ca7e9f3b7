package sente

import (
	"bytes"
	"encoding/json"
	"errors"
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

// Unmarshal is json.Unmarshal.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

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

// SplitArray returns the raw elements of a JSON array.
func (JSON) SplitArray(data []byte) ([][]byte, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '[' {
		return nil, errNotArray
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, err
	}
	out := make([][]byte, len(raws))
	for i, r := range raws {
		out[i] = r
	}
	return out, nil
}
