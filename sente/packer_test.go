package sente_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/wsasync/wsasync/sente"
)

// splitReference is what SplitArray must agree with: json.Unmarshal into raw
// messages.
func splitReference(data []byte) ([][]byte, bool) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '[' {
		return nil, false
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, false
	}
	out := make([][]byte, len(raws))
	for i, r := range raws {
		out[i] = bytes.TrimSpace(r)
	}
	return out, true
}

func checkSplit(t *testing.T, in string) {
	t.Helper()
	want, ok := splitReference([]byte(in))
	got, err := sente.JSON{}.SplitArray([]byte(in))
	if ok != (err == nil) {
		t.Fatalf("SplitArray(%q): err %v, reference ok %v", in, err, ok)
	}
	if !ok {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("SplitArray(%q) = %q, want %q", in, got, want)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("SplitArray(%q)[%d] = %q, want %q", in, i, got[i], want[i])
		}
	}
}

var splitCases = []string{
	`[]`,
	` [ ] `,
	`[1]`,
	`[ "a,b" , {"x":[1,2],"y":"]"}, null ]`,
	`[["chat/msg",{"text":"hi"}],"cb1"]`,
	`["a\"]", "b\\", "c\\\"d"]`,
	`[[[]],[{}],{"a":{"b":[1,{"c":"}"}]}}]`,
	`[1,`,
	`{}`,
	`"[1]"`,
	`[1 2]`,
	``,
}

func TestJSONSplitArray(t *testing.T) {
	for _, c := range splitCases {
		checkSplit(t, c)
	}
}

func TestJSONUnmarshalString(t *testing.T) {
	for _, in := range []string{`"chat/msg"`, `"é/ü"`, `"a\"b"`, `"a\nb"`, `"\u00e9"`, `""`, `"tab	x"`} {
		var got, want string
		errGot := sente.JSON{}.Unmarshal([]byte(in), &got)
		errWant := json.Unmarshal([]byte(in), &want)
		if (errGot == nil) != (errWant == nil) || got != want {
			t.Errorf("Unmarshal(%s) = %q, %v; json says %q, %v", in, got, errGot, want, errWant)
		}
	}
}

func FuzzJSONSplitArray(f *testing.F) {
	for _, c := range splitCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, in string) { checkSplit(t, in) })
}
