package redis

import (
	"bytes"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsasync/wsasync/sente"
)

// A batch packed by Publish reads back as the same pushes, in order, at
// consecutive positions of the entry.
func TestPackParse(t *testing.T) {
	in := []sente.Push{
		{Target: sente.ToUser, To: "ada", Event: []byte(`["chat/msg","hi"]`)},
		{Target: sente.ToClient, To: "c:1", Event: []byte(`[]`), Flush: true},
		{Target: sente.ToAll, Event: []byte("12345678901")},
		{Target: sente.ToUser, To: "", Event: nil},
	}
	var buf []byte
	for i := range in {
		buf = packPush(buf, &in[i])
	}
	out, epoch, err := parseEntry(goredis.XMessage{ID: "1795472008619-7", Values: map[string]any{"e": "ep", "p": string(buf)}})
	if err != nil || epoch != "ep" || len(out) != len(in) {
		t.Fatalf("parseEntry: %d pushes, epoch %q, %v", len(out), epoch, err)
	}
	base, _ := idSeq("1795472008619-7")
	for i, p := range out {
		w := in[i]
		if p.Target != w.Target || p.To != w.To || p.Flush != w.Flush || !bytes.Equal(p.Event, w.Event) || p.Pos.Seq != base+uint64(i) {
			t.Errorf("push %d: %+v, want %+v at Seq %d", i, p, w, base+uint64(i))
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	f.Add("104:15:ada1[\"chat/msg\",\"hi\"]")
	f.Add("300:1:7201:1:u8")
	f.Add("101:9999999999:x")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		out, _, err := parseEntry(goredis.XMessage{ID: "5-5", Values: map[string]any{"e": "e", "p": s}})
		if err != nil && len(out) != 0 {
			t.Fatal("pushes with an error")
		}
		n := 0
		for _, p := range out {
			if p.Target < sente.ToUser || p.Target > sente.ToAll {
				t.Fatalf("target %d", p.Target)
			}
			n += len(p.To) + len(p.Event)
		}
		if n > len(s) {
			t.Fatalf("%d bytes of pushes from %d", n, len(s))
		}
	})
}
