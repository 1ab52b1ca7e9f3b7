package nats

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wsasync/wsasync/sente"
)

func TestParseURL(t *testing.T) {
	var o Options
	servers, err := parseURL("nats://h:1,nats://h:2?prefix=app&history=50&history_age=1m&node_ttl=3s", &o)
	if err != nil || servers != "nats://h:1,nats://h:2" {
		t.Fatalf("%q, %v", servers, err)
	}
	if o.Prefix != "app" || o.History != 50 || o.HistoryAge != time.Minute || o.NodeTTL != 3*time.Second {
		t.Fatalf("%+v", o)
	}
	// Options set in code win.
	o = Options{Prefix: "mine", History: 7}
	if _, err := parseURL("nats://h?prefix=app&history=50", &o); err != nil || o.Prefix != "mine" || o.History != 7 {
		t.Fatalf("%+v, %v", o, err)
	}
	for _, bad := range []string{"nats://h?nope=1", "nats://h?history=x", "nats://h?node_ttl=10", "nats://h?%zz"} {
		if _, err := parseURL(bad, &Options{}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if s, err := parseURL("", &Options{}); err != nil || s == "" {
		t.Fatalf("empty url: %q, %v", s, err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New("nats://127.0.0.1:4222?prefix=a.b", Options{}); err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("prefix with a dot: %v", err)
	}
	// Nothing listens on port 1.
	start := time.Now()
	if _, err := New("nats://127.0.0.1:1", Options{}); err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("unreachable server: %v after %v", err, time.Since(start))
	}
}

func TestEncoding(t *testing.T) {
	in := []sente.Push{
		{Target: sente.ToUser, To: "ada", Event: []byte(`["a/b",1]`), Flush: true},
		{Target: sente.ToClient, To: "", Event: nil},
		{Target: sente.ToAll, To: strings.Repeat("x", 300), Event: []byte(strings.Repeat("y", 70000))},
	}
	buf := []byte{formatV1}
	for _, p := range in {
		buf = appendRecord(buf, p)
	}
	out, err := decode(nil, buf, "e", 7)
	if err != nil || len(out) != len(in) {
		t.Fatalf("%d pushes, %v", len(out), err)
	}
	for i, p := range out {
		want := in[i]
		want.Pos = sente.Position{Epoch: "e", Seq: 7<<idxBits | uint64(i+1)}
		if p.Target != want.Target || p.To != want.To || string(p.Event) != string(want.Event) || p.Flush != want.Flush || p.Pos != want.Pos {
			t.Fatalf("push %d: %+v", i, p)
		}
	}
	// A truncated batch is refused whole, unless it ends at a record
	// boundary: then it is a shorter batch.
	boundaries := 0
	for n := range len(buf) {
		got, err := decode(nil, buf[:n], "e", 7)
		switch {
		case err == nil:
			boundaries++
		case !errors.Is(err, errCorrupt) || len(got) != 0:
			t.Fatalf("truncated to %d: %d pushes, %v", n, len(got), err)
		}
	}
	if boundaries != 2 {
		t.Fatalf("%d truncations decoded, want 2", boundaries)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{formatV1, 1, 0, 1, 'a', 1, 'b'})
	f.Add([]byte{formatV1, 3, 1, 0, 0, 2, 0, 0, 0})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := decode(nil, data, "e", 1)
		if err != nil && len(out) != 0 {
			t.Fatal("pushes with an error")
		}
		for _, p := range out {
			if p.Target < sente.ToUser || p.Target > sente.ToAll {
				t.Fatal(fmt.Sprint("target ", p.Target))
			}
		}
	})
}

func TestKeys(t *testing.T) {
	for _, uid := range []string{"", "ada", "ü/ñ.*> x", strings.Repeat("z", 200)} {
		k := userKey(uid)
		if strings.ContainsAny(k, ".*> /") {
			t.Fatalf("key %q", k)
		}
		if got, ok := userOf(k); !ok || got != uid {
			t.Fatalf("%q → %q → %q", uid, k, got)
		}
	}
	if _, ok := userOf("x"); ok {
		t.Fatal("foreign key read")
	}
}

func TestResume(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t1 := t0.Add(time.Hour)
	at := cursor{epoch: "e", created: t0, seq: 10}
	for _, tc := range []struct {
		name   string
		cur    cursor
		epoch  string
		made   time.Time
		last   uint64
		next   cursor
		rotate bool
	}{
		{"first read starts at the end", cursor{}, "e", t0, 7, cursor{epoch: "e", created: t0, seq: 7}, false},
		{"same history, more pushes", at, "e", t0, 15, at, false},
		{"same history, nothing new", at, "e", t0, 10, at, false},
		{"replaced, new epoch", at, "f", t1, 3, cursor{epoch: "f", created: t1, gap: true}, false},
		{"replaced with the same epoch", at, "e", t1, 3, cursor{epoch: "e", created: t1, gap: true}, true},
		{"went back", at, "e", t0, 4, cursor{epoch: "e", created: t0, seq: 4, gap: true}, true},
		{"renamed by another node, ahead of us", at, "g", t0, 12, cursor{epoch: "g", created: t0, seq: 10, gap: true}, false},
		{"renamed by another node, went back", at, "g", t0, 6, cursor{epoch: "g", created: t0, seq: 6, gap: true}, false},
	} {
		next, rotate, _ := resume(tc.cur, tc.epoch, tc.made, tc.last)
		if next != tc.next || rotate != tc.rotate {
			t.Errorf("%s: got %+v rotate %v, want %+v rotate %v", tc.name, next, rotate, tc.next, tc.rotate)
		}
	}
}
