package msgpack

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	vm "github.com/vmihailenco/msgpack/v5"

	"github.com/wsasync/wsasync/sente"
)

var p Packer

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := p.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%#v): %v", v, err)
	}
	return b
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNameBinary(t *testing.T) {
	if p.Name() != "msgpack" || !p.Binary() {
		t.Fatalf("Name %q Binary %v", p.Name(), p.Binary())
	}
}

type msg struct {
	Text   string    `json:"text"`
	N      int64     `json:"n"`
	Skip   string    `json:"-"`
	Empty  string    `json:"empty,omitempty"`
	At     time.Time `json:"at"`
	Bytes  []byte    `json:"bytes"`
	Tagged int       `msgpack:"mp" json:"js"`
}

func TestMarshalUnmarshal(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	in := msg{Text: "hi", N: 3, Skip: "x", At: at, Bytes: []byte{0, 1}, Tagged: 7}
	b := mustMarshal(t, in)
	// Field names come from json tags unless a msgpack tag is there.
	var m map[string]any
	if err := p.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"text", "n", "at", "bytes", "mp"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no key %q in %v", k, m)
		}
	}
	for _, k := range []string{"Skip", "-", "empty", "js", "Text"} {
		if _, ok := m[k]; ok {
			t.Errorf("key %q in %v", k, m)
		}
	}
	if m["n"] != int8(3) { // compact ints
		t.Errorf("n = %#v, want int8(3)", m["n"])
	}
	var out msg
	if err := p.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	in.Skip = ""
	if !out.At.Equal(at) {
		t.Errorf("time %v, want %v", out.At, at)
	}
	out.At = in.At
	if !reflect.DeepEqual(out, in) {
		t.Errorf("got %+v, want %+v", out, in)
	}

	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, "c0"},
		{"chsk/handshake", "ae 6368736b2f68616e647368616b65"},
		{int64(1), "01"},
		{int64(-1), "ff"},
		{uint16(300), "cd 012c"},
		{true, "c3"},
		{[]byte{1}, "c4 01 01"},
		{sente.Raw(nil), "c0"},
		{sente.Raw{0x92, 0x01, 0xc0}, "92 01 c0"},
	} {
		if got := mustMarshal(t, tc.v); !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("Marshal(%#v) = % x, want %s", tc.v, got, tc.want)
		}
	}
	if _, err := p.Marshal(sente.Raw{0x92, 0x01}); err == nil {
		t.Error("Marshal of a truncated sente.Raw: no error")
	}
	if _, err := p.Marshal(make(chan int)); err == nil {
		t.Error("Marshal(chan): no error")
	}
}

func TestUnmarshalTargets(t *testing.T) {
	packed := mustMarshal(t, map[string]any{"a": []any{int64(1), "b"}})
	var raw sente.Raw
	if err := p.Unmarshal(packed, &raw); err != nil || !bytes.Equal(raw, packed) {
		t.Fatalf("into *sente.Raw: % x, %v; want % x", raw, err, packed)
	}
	packed[0] = 0 // the Raw is a copy
	if raw[0] != 0x81 {
		t.Fatal("sente.Raw shares the input")
	}

	var vr vm.RawMessage
	if err := p.Unmarshal(raw, &vr); err != nil || !bytes.Equal(vr, raw) {
		t.Fatalf("into *msgpack.RawMessage: % x, %v", vr, err)
	}

	var bs []byte
	if err := p.Unmarshal(mustMarshal(t, []byte("bin")), &bs); err != nil || string(bs) != "bin" {
		t.Fatalf("bin into *[]byte: %q, %v", bs, err)
	}
	if err := p.Unmarshal(mustMarshal(t, "str"), &bs); err != nil || string(bs) != "str" {
		t.Fatalf("str into *[]byte: %q, %v", bs, err)
	}

	var s string
	if err := p.Unmarshal(unhex(t, "c0"), &s); err != nil || s != "" {
		t.Fatalf("nil into *string: %q, %v", s, err)
	}
	if err := p.Unmarshal(unhex(t, "01"), &s); err == nil {
		t.Fatal("int into *string: no error")
	}

	// Not exactly one value.
	for _, bad := range []string{"", "01 01", "a3 6162", "c1", "dd ffffffff"} {
		var v any
		if err := p.Unmarshal(unhex(t, bad), &v); err == nil {
			t.Errorf("Unmarshal(%s): no error", bad)
		}
	}
	if err := p.Unmarshal(unhex(t, "c0"), nil); err == nil {
		t.Error("Unmarshal into nil: no error")
	}
}

// A map[any]any target with an array as key makes the library panic (the
// key is unhashable); Unmarshal reports it as an error.
func TestUnmarshalPanicIsError(t *testing.T) {
	var m map[any]any
	err := p.Unmarshal(unhex(t, "81 91 01 02"), &m)
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
}

func TestAppendSplitArray(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, math.MaxUint16, math.MaxUint16 + 1} {
		elems := make([][]byte, n)
		for i := range elems {
			elems[i] = mustMarshal(t, i%200) // 1 or 2 bytes
		}
		prefix := []byte("keep")
		b := p.AppendArray(prefix, elems...)
		if !bytes.HasPrefix(b, []byte("keep")) {
			t.Fatalf("n=%d: prefix lost", n)
		}
		b = b[len(prefix):]
		var hdr string
		switch {
		case n < 16:
			hdr = hex.EncodeToString([]byte{0x90 | byte(n)})
		case n <= math.MaxUint16:
			hdr = "dc" + hex.EncodeToString([]byte{byte(n >> 8), byte(n)})
		default:
			hdr = "dd" + hex.EncodeToString([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		}
		if !bytes.HasPrefix(b, unhex(t, hdr)) {
			t.Fatalf("n=%d: header % x, want %s", n, b[:min(len(b), 5)], hdr)
		}
		// The library reads it as the same array.
		var ints []int
		if err := vm.Unmarshal(b, &ints); err != nil || len(ints) != n {
			t.Fatalf("n=%d: library reads %d elements, %v", n, len(ints), err)
		}
		got, err := p.SplitArray(b)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(got) != n {
			t.Fatalf("n=%d: split into %d", n, len(got))
		}
		for i := range got {
			if !bytes.Equal(got[i], elems[i]) {
				t.Fatalf("n=%d: element %d = % x, want % x", n, i, got[i], elems[i])
			}
		}
	}
}

// Elements are cut to their length: appending to one leaves the next alone.
func TestSplitArrayCapacity(t *testing.T) {
	b := p.AppendArray(nil, []byte{1}, []byte{2})
	parts, err := p.SplitArray(b)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(parts[0], 9)
	if parts[1][0] != 2 {
		t.Fatal("append to an element overwrote the next")
	}
}

// The protocol's shapes, packed as sente's wire packs them, unpacked again.
func TestEventEnvelopeRoundTrip(t *testing.T) {
	id := mustMarshal(t, "chat/msg")
	data := mustMarshal(t, map[string]any{"text": "hello"})
	event := p.AppendArray(nil, id, data)
	frame := p.AppendArray(nil, event, mustMarshal(t, "cb-1"))

	// Same bytes as the library packing the whole as one value.
	want, err := vm.Marshal([]any{[]any{"chat/msg", map[string]any{"text": "hello"}}, "cb-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frame, want) {
		t.Fatalf("frame % x, library packs % x", frame, want)
	}

	env, err := p.SplitArray(frame)
	if err != nil || len(env) != 2 {
		t.Fatalf("envelope: %d parts, %v", len(env), err)
	}
	var cb string
	if err := p.Unmarshal(env[1], &cb); err != nil || cb != "cb-1" {
		t.Fatalf("cb %q, %v", cb, err)
	}
	ev, err := p.SplitArray(env[0])
	if err != nil || len(ev) != 2 {
		t.Fatalf("event: %d parts, %v", len(ev), err)
	}
	var gotID string
	var gotData struct {
		Text string `json:"text"`
	}
	if err := p.Unmarshal(ev[0], &gotID); err != nil || gotID != "chat/msg" {
		t.Fatalf("id %q, %v", gotID, err)
	}
	if err := p.Unmarshal(ev[1], &gotData); err != nil || gotData.Text != "hello" {
		t.Fatalf("data %+v, %v", gotData, err)
	}

	// A batch [[e1, e2, e3], nil] and an event without data.
	e2 := p.AppendArray(nil, mustMarshal(t, "chsk/ws-ping"))
	batch := p.AppendArray(nil, p.AppendArray(nil, event, e2, event), mustMarshal(t, nil))
	env, err = p.SplitArray(batch)
	if err != nil || len(env) != 2 || !bytes.Equal(env[1], []byte{nilCode}) {
		t.Fatalf("batch envelope %q, %v", env, err)
	}
	evs, err := p.SplitArray(env[0])
	if err != nil || len(evs) != 3 || !bytes.Equal(evs[0], event) || !bytes.Equal(evs[1], e2) || !bytes.Equal(evs[2], event) {
		t.Fatalf("batch %q, %v", evs, err)
	}
	ping, err := p.SplitArray(evs[1])
	if err != nil || len(ping) != 1 {
		t.Fatalf("[id]: %q, %v", ping, err)
	}
}

// samples holds one value of every format, as hex.
var samples = map[string]string{
	"positive fixint": "05",
	"negative fixint": "e0",
	"fixmap":          "82 a1 61 01 a1 62 c0",
	"fixarray":        "93 01 a1 61 c3",
	"fixstr":          "a3 616263",
	"nil":             "c0",
	"false":           "c2",
	"true":            "c3",
	"bin 8":           "c4 03 010203",
	"bin 16":          "c5 0003 010203",
	"bin 32":          "c6 00000003 010203",
	"ext 8":           "c7 02 05 0102",
	"ext 16":          "c8 0002 05 0102",
	"ext 32":          "c9 00000002 05 0102",
	"float 32":        "ca 3f800000",
	"float 64":        "cb 3ff0000000000000",
	"uint 8":          "cc ff",
	"uint 16":         "cd ffff",
	"uint 32":         "ce ffffffff",
	"uint 64":         "cf ffffffffffffffff",
	"int 8":           "d0 80",
	"int 16":          "d1 8000",
	"int 32":          "d2 80000000",
	"int 64":          "d3 8000000000000000",
	"fixext 1":        "d4 05 01",
	"fixext 2":        "d5 05 0102",
	"fixext 4":        "d6 05 01020304",
	"fixext 8":        "d7 05 0102030405060708",
	"fixext 16":       "d8 05 0102030405060708090a0b0c0d0e0f10",
	"timestamp 32":    "d6 ff 00000001",
	"timestamp 64":    "d7 ff 0000000400000001",
	"timestamp 96":    "c7 0c ff 3b9ac9ff 0000000000000001",
	"str 8":           "d9 03 616263",
	"str 16":          "da 0003 616263",
	"str 32":          "db 00000003 616263",
	"array 16":        "dc 0002 01 02",
	"array 32":        "dd 00000002 01 02",
	"map 16":          "de 0001 a1 61 01",
	"map 32":          "df 00000001 a1 61 01",
	"empty array 32":  "dd 00000000",
	"empty str 32":    "db 00000000",
	"nested":          "92 81 a1 61 92 c0 c4 00 dc 0000",
}

func TestSkipEveryFormat(t *testing.T) {
	for name, h := range samples {
		b := unhex(t, h)
		if n, err := skip(b, 0); err != nil || n != len(b) {
			t.Errorf("%s: skip = %d, %v; want %d", name, n, err, len(b))
		}
		// Every strict prefix is truncated.
		for i := range len(b) {
			if _, err := skip(b[:i], 0); err == nil {
				t.Errorf("%s: prefix of %d bytes: no error", name, i)
			}
		}
		// Inside an array, with something after it.
		arr := p.AppendArray(nil, b, []byte{0x01})
		parts, err := p.SplitArray(arr)
		if err != nil || len(parts) != 2 || !bytes.Equal(parts[0], b) {
			t.Errorf("%s: split %q, %v", name, parts, err)
		}
		// The library reads it too (unknown ext types aside).
		var v any
		if err := p.Unmarshal(b, &v); err != nil && !strings.Contains(err.Error(), "ext") {
			t.Errorf("%s: Unmarshal: %v", name, err)
		}
	}
}

func TestTimestamps(t *testing.T) {
	for _, at := range []time.Time{
		time.Unix(1, 0),                             // 32-bit form
		time.Unix(1, 5),                             // 64-bit form
		time.Unix(-1, 999_999_999),                  // 96-bit form
		time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC), // 96-bit form
	} {
		b := mustMarshal(t, at)
		if err := checkValue(b); err != nil {
			t.Errorf("%v (% x): %v", at, b, err)
		}
		var got time.Time
		if err := p.Unmarshal(b, &got); err != nil || !got.Equal(at) {
			t.Errorf("%v: got %v, %v", at, got, err)
		}
	}
	for _, bad := range []string{
		"d4 ff 00",                               // 1 byte
		"d5 ff 0000",                             // 2 bytes
		"d8 ff 00000000000000000000000000000000", // 16 bytes
		"d7 ff ee6b2800 00000000",                // 64-bit, 1e9 ns
		"c7 0c ff 3b9aca00 0000000000000001",     // 96-bit, 1e9 ns
		"c7 05 ff 0000000000",                    // 5 bytes
	} {
		if err := checkValue(unhex(t, bad)); !errors.Is(err, errTimestamp) {
			t.Errorf("%s: %v, want errTimestamp", bad, err)
		}
	}
}

func nested(depth int) []byte {
	return append(bytes.Repeat([]byte{0x91}, depth), 0xc0)
}

func TestSplitArrayErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errTruncated},
		{"nil", unhex(t, "c0"), errNotArray},
		{"map", unhex(t, "80"), errNotArray},
		{"string", unhex(t, "a1 5b"), errNotArray},
		{"json", []byte(`[["a/b"],null]`), errNotArray},
		{"trailing", unhex(t, "91 01 01"), errTrailing},
		{"two arrays", unhex(t, "90 90"), errTrailing},
		{"truncated array 16", unhex(t, "dc 00"), errTruncated},
		{"truncated array 32", unhex(t, "dd 000000"), errTruncated},
		{"missing element", unhex(t, "92 01"), errTooLong},
		{"missing bytes", unhex(t, "92 01 cd"), errTruncated},
		{"truncated element", unhex(t, "91 cd 01"), errTruncated},
		{"never used", unhex(t, "91 c1"), errNeverUsed},
		{"huge array 32", unhex(t, "dd ffffffff 01"), errTooLong},
		{"huge array 16", unhex(t, "dc ffff"), errTooLong},
		{"huge nested array", unhex(t, "91 dd ffffffff"), errTooLong},
		{"huge map 32", unhex(t, "91 df ffffffff 01"), errTooLong},
		{"map of half an entry", unhex(t, "91 81 01"), errTooLong},
		{"map 16 too long", unhex(t, "91 de 0001 01"), errTooLong},
		{"huge str 32", unhex(t, "91 db ffffffff 61"), errTooLong},
		{"huge bin 32", unhex(t, "91 c6 ffffffff 61"), errTooLong},
		{"huge ext 32", unhex(t, "91 c9 ffffffff 05 61"), errTooLong},
		{"ext without type", unhex(t, "91 c7 00"), errTruncated},
		{"fixext short", unhex(t, "91 d8 05 0102"), errTooLong},
		{"fixstr short", unhex(t, "91 a5 6162"), errTooLong},
		{"depth 101", nested(101), errTooDeep},
		{"depth 101 in a map", append(bytes.Repeat([]byte{0x91}, 99), 0x81, 0xc0, 0x91, 0xc0), errTooDeep},
		{"depth 1M", nested(1 << 20), errTooDeep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := p.SplitArray(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("SplitArray(% x) = %q, %v; want %v", tc.in[:min(len(tc.in), 16)], parts, err, tc.want)
			}
			var v any
			if err := p.Unmarshal(tc.in, &v); err == nil && tc.want != errNotArray {
				t.Fatalf("Unmarshal: no error")
			}
		})
	}
	// 100 levels in all are fine.
	if parts, err := p.SplitArray(nested(100)); err != nil || len(parts) != 1 {
		t.Fatalf("depth 100: %q, %v", parts, err)
	}
	var v any
	if err := p.Unmarshal(nested(100), &v); err != nil {
		t.Fatalf("Unmarshal depth 100: %v", err)
	}
	if err := p.Unmarshal(nested(1<<20), &v); !errors.Is(err, errTooDeep) {
		t.Fatalf("Unmarshal depth 1M: %v", err)
	}
}

// Garbage never panics, and a huge declared length allocates nothing.
func TestSplitArrayHugeAllocates(t *testing.T) {
	in := unhex(t, "dd ffffffff")
	in = append(in, bytes.Repeat([]byte{0x01}, 1000)...)
	allocs := testing.AllocsPerRun(100, func() { _, _ = p.SplitArray(in) })
	if allocs > 0 {
		t.Fatalf("%v allocations", allocs)
	}
}

func FuzzSplitArray(f *testing.F) {
	ev := p.AppendArray(nil, []byte("\xa8chat/msg"), []byte("\x81\xa1a\x01"))
	f.Add(p.AppendArray(nil, ev, []byte("\xa3cb1")))
	f.Add(p.AppendArray(nil, p.AppendArray(nil, ev, ev), []byte{nilCode}))
	f.Add([]byte(`[["a/b",1],null]`))
	f.Add(unhex(f, "dd ffffffff 01"))
	f.Add(unhex(f, "92 c7 0c ff 3b9ac9ff 0000000000000001 d7 ff 0000000400000001"))
	f.Add(unhex(f, "93 df 00000001 a1 61 dc 0001 c9 00000001 05 00 c6 00000000"))
	f.Add(nested(101))
	for _, h := range samples {
		f.Add(p.AppendArray(nil, unhex(f, h)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := p.SplitArray(data)
		if err != nil {
			if len(parts) != 0 {
				t.Fatal("parts with an error")
			}
			return
		}
		again, err := p.SplitArray(p.AppendArray(nil, parts...))
		if err != nil || len(again) != len(parts) {
			t.Fatalf("repacked: %d parts, %v", len(again), err)
		}
		for i, part := range parts {
			if !bytes.Equal(again[i], part) {
				t.Fatalf("part %d changed", i)
			}
			if err := checkValue(part); err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			var v any
			_ = p.Unmarshal(part, &v) // must not panic
			var s string
			_ = p.Unmarshal(part, &s)
			var r sente.Raw
			if err := p.Unmarshal(part, &r); err != nil || !bytes.Equal(r, part) {
				t.Fatalf("part %d into sente.Raw: %v", i, err)
			}
		}
	})
}
