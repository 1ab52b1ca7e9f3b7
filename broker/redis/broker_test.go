package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsasync/wsasync/sente"
)

func TestIDs(t *testing.T) {
	for _, id := range []string{"0-0", "0-1", "1795472008619-0", "1795472008619-4095", "4398046511103-4095"} {
		seq, ok := idSeq(id)
		if !ok || seqID(seq) != id || seqID(seq|lastPush) != id || seq&lastPush != 0 {
			t.Errorf("idSeq(%q) = %d, %v; back %q", id, seq, ok, seqID(seq))
		}
	}
	for _, id := range []string{"", "1", "1-", "-1", "a-1", "1-4096", "4398046511104-0"} {
		if seq, ok := idSeq(id); ok {
			t.Errorf("idSeq(%q) = %d, want out of range", id, seq)
		}
	}
	a, _ := idSeq("5-9")
	b, _ := idSeq("6-0")
	if a >= b {
		t.Errorf("Seq of 5-9 (%d) not below 6-0 (%d)", a, b)
	}
	for _, c := range []struct {
		a, b string
		want int
	}{{"1-2", "1-3", -1}, {"2-0", "1-9", 1}, {"3-3", "3-3", 0}, {"x", "1-1", 1}, {"1-1", "x", -1}} {
		if got := compareIDs(c.a, c.b); got != c.want {
			t.Errorf("compareIDs(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestMembers(t *testing.T) {
	for _, c := range []client{{uid: "alice", id: "c1"}, {uid: "", id: "c"}, {uid: "a:b:", id: ":x:"}, {uid: "12:3", id: ""}, {uid: "é\x00", id: "\x00"}} {
		got, ok := splitMember(member(c.uid, c.id))
		if !ok || got != c {
			t.Errorf("member %+v read back as %+v, %v", c, got, ok)
		}
	}
	for _, m := range []string{"", "x", "5:ab:c", "2:ab", "-1::", "2:abc"} {
		if c, ok := splitMember(m); ok {
			t.Errorf("splitMember(%q) = %+v, want malformed", m, c)
		}
	}
}

func TestURL(t *testing.T) {
	var o Options
	ro, err := parseURL("redis://u:p@example.com:6390/3?prefix=app&history=50&history_age=30s&node_ttl=3s&dial_timeout=2s", &o)
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Prefix: "app", History: 50, HistoryAge: 30 * time.Second, NodeTTL: 3 * time.Second}
	if o != want {
		t.Errorf("options %+v, want %+v", o, want)
	}
	if ro.Addr != "example.com:6390" || ro.DB != 3 || ro.Username != "u" || ro.Password != "p" || ro.DialTimeout != 2*time.Second {
		t.Errorf("redis options: addr %q db %d user %q password %q dial %v", ro.Addr, ro.DB, ro.Username, ro.Password, ro.DialTimeout)
	}
	// Options set in code win.
	o = Options{Prefix: "code", NodeTTL: time.Second}
	if _, err := parseURL("redis://h/0?prefix=url&node_ttl=5s", &o); err != nil || o.Prefix != "code" || o.NodeTTL != time.Second {
		t.Errorf("options %+v, %v", o, err)
	}
	for _, u := range []string{"redis://h?history=x", "redis://h?history=-1", "redis://h?node_ttl=5", "redis://h?history_age=-1s", "redis://h?nonsense=1", "http://h"} {
		if _, err := New(u, Options{}); err == nil {
			t.Errorf("New(%q) accepted it", u)
		}
	}
	b, err := New("redis://127.0.0.1:1/0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.opts.Prefix != DefaultPrefix || b.opts.History != DefaultHistory || b.opts.HistoryAge != DefaultHistoryAge || b.opts.NodeTTL != DefaultNodeTTL || b.opts.Logger == nil {
		t.Errorf("defaults: %+v", b.opts)
	}
	b.Close()
}

// Pushes published concurrently by 3 nodes reach the 3 of them in one order,
// with strictly increasing positions of one epoch.
func TestOrderOnThreeNodes(t *testing.T) {
	rdb := needRedis(t)
	opts := Options{Prefix: testPrefix(t, rdb)}
	var nodes []*Broker
	var cols []*collector
	var start sente.Position
	for i := range 3 {
		b := newNode(t, redisURL(), opts)
		c, pos, _ := subscribe(t, b)
		if i == 0 {
			start = pos
		} else if pos != start {
			t.Fatalf("node %d subscribed at %v, node 0 at %v", i, pos, start)
		}
		nodes = append(nodes, b)
		cols = append(cols, c)
	}
	if start.Epoch == "" {
		t.Fatal("Subscribe returned no epoch")
	}
	const perWorker, workers = 100, 4 // per node
	var wg sync.WaitGroup
	for i, b := range nodes {
		for w := range workers {
			wg.Go(func() {
				for k := range perWorker {
					if err := b.Publish(context.Background(), push(fmt.Sprint("u", w), fmt.Sprintf("%d/%d/%d", i, w, k))); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	total := len(nodes) * workers * perWorker
	first := cols[0].waitPushes(t, total)
	for i, c := range cols {
		got := c.waitPushes(t, total)
		if len(got) != total {
			t.Fatalf("node %d got %d pushes, want %d", i, len(got), total)
		}
		last := start
		next := map[string]int{} // per publisher goroutine, its order holds
		for k, p := range got {
			if p.Pos.Epoch != start.Epoch || p.Pos.Seq <= last.Seq {
				t.Fatalf("node %d push %d at %v after %v", i, k, p.Pos, last)
			}
			last = p.Pos
			if p.Pos != first[k].Pos || string(p.Event) != string(first[k].Event) || p.To != first[k].To || p.Target != sente.ToUser {
				t.Fatalf("node %d push %d is %+v, node 0 has %+v", i, k, p, first[k])
			}
			ev := string(p.Event)
			src := ev[:strings.LastIndexByte(ev, '/')]
			if want := fmt.Sprintf("%s/%d", src, next[src]); ev != want {
				t.Fatalf("node %d push %d is %q, want %q", i, k, ev, want)
			}
			next[src]++
		}
	}
}

// Many goroutines publishing on one node: every push arrives once, with its
// target, flush flag and event.
func TestConcurrentPublishers(t *testing.T) {
	rdb := needRedis(t)
	b := newNode(t, redisURL(), Options{Prefix: testPrefix(t, rdb)})
	c, _, _ := subscribe(t, b)
	const n, workers = 100, 32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range n {
				p := sente.Push{Target: sente.Target(1 + k%3), To: fmt.Sprint("to", w), Event: fmt.Appendf(nil, "%d-%d", w, k), Flush: k%2 == 0}
				if p.Target == sente.ToAll {
					p.To = ""
				}
				if err := b.Publish(context.Background(), p); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, p := range c.waitPushes(t, n*workers) {
		var w, k int
		fmt.Sscanf(string(p.Event), "%d-%d", &w, &k)
		wantTo := fmt.Sprint("to", w)
		if k%3 == 2 {
			wantTo = ""
		}
		if seen[string(p.Event)] || p.Target != sente.Target(1+k%3) || p.Flush != (k%2 == 0) || p.To != wantTo {
			t.Fatalf("push %+v (seen before: %v)", p, seen[string(p.Event)])
		}
		seen[string(p.Event)] = true
	}
	if err := b.Publish(context.Background(), sente.Push{Target: 9}); err == nil {
		t.Error("Publish took target 9")
	}
}

// Subscribe returns the position of the log's end (that of the last entry's
// last possible push): a node subscribing late gets exactly the pushes after
// it.
func TestSubscribePosition(t *testing.T) {
	rdb := needRedis(t)
	opts := Options{Prefix: testPrefix(t, rdb)}
	a := newNode(t, redisURL(), opts)
	ca, start, _ := subscribe(t, a)
	if start.Seq != lastPush {
		t.Errorf("empty history: Subscribe at %v, want Seq %d (entry 0-0)", start, lastPush)
	}
	for i := range 5 {
		if err := a.Publish(context.Background(), push("u", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := ca.waitPushes(t, 5)
	b := newNode(t, redisURL(), opts)
	cb, pos, _ := subscribe(t, b)
	if pos.Epoch != got[4].Pos.Epoch || pos.Seq != got[4].Pos.Seq|lastPush {
		t.Fatalf("late node subscribed at %v, last push at %v", pos, got[4].Pos)
	}
	if err := a.Publish(context.Background(), push("u", "after")); err != nil {
		t.Fatal(err)
	}
	if p := cb.waitPushes(t, 1); len(p) != 1 || string(p[0].Event) != "after" {
		t.Fatalf("late node got %+v", p)
	}
	if _, err := b.Subscribe(context.Background(), sente.Handler{Push: func(sente.Push) {}}); err == nil {
		t.Error("a second Subscribe succeeded")
	}
}

func TestReplay(t *testing.T) {
	rdb := needRedis(t)
	b := newNode(t, redisURL(), Options{Prefix: testPrefix(t, rdb)})
	if lost, err := b.Replay(context.Background(), sente.Position{}, sente.Position{}, nil); err != nil || lost {
		t.Errorf("Replay of nothing: %v, %v", lost, err)
	}
	c, _, _ := subscribe(t, b)
	for i := range 10 {
		if err := b.Publish(context.Background(), push("u", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	log := c.waitPushes(t, 10)
	var got []sente.Push
	lost, err := b.Replay(context.Background(), log[2].Pos, log[7].Pos, func(p sente.Push) { got = append(got, p) })
	if err != nil || lost {
		t.Fatalf("Replay: lost %v, %v", lost, err)
	}
	if !slices.EqualFunc(got, log[3:8], func(a, b sente.Push) bool {
		return a.Pos == b.Pos && string(a.Event) == string(b.Event) && a.To == b.To && a.Target == b.Target
	}) {
		t.Fatalf("Replay (%v, %v] gave %+v, want %+v", log[2].Pos, log[7].Pos, got, log[3:8])
	}
	got = nil
	if lost, err := b.Replay(context.Background(), log[9].Pos, log[9].Pos, func(p sente.Push) { got = append(got, p) }); err != nil || lost || len(got) != 0 {
		t.Errorf("empty range: %v, %v, %+v", lost, err, got)
	}
	if lost, err := b.Replay(context.Background(), sente.Position{}, log[9].Pos, func(sente.Push) {}); err != nil || !lost {
		t.Errorf("Replay from nowhere: lost %v, %v", lost, err)
	}
	other := sente.Position{Epoch: "another", Seq: log[2].Pos.Seq}
	if lost, err := b.Replay(context.Background(), other, log[9].Pos, func(sente.Push) { t.Error("pushes of another epoch") }); err != nil || !lost {
		t.Errorf("Replay from another epoch: lost %v, %v", lost, err)
	}
}

// Replay reports lost once the log was trimmed past from, by count or by
// age, and still replays from positions the log holds.
func TestReplayAfterTrim(t *testing.T) {
	rdb := needRedis(t)
	b := newNode(t, redisURL(), Options{Prefix: testPrefix(t, rdb), History: 10})
	c, _, _ := subscribe(t, b)
	const n = 450 // Redis trims whole nodes of 100 entries
	for i := range n {
		if err := b.Publish(context.Background(), push("u", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			c.waitPushes(t, 1)
		}
	}
	// The node may miss pushes, if it falls behind the trimming; the last
	// ones it gets.
	c.wait(t, 10*time.Second, "the last push", func(p []sente.Push, _ []sente.Presence) bool {
		return len(p) > 0 && string(p[len(p)-1].Event) == fmt.Sprint(n-1)
	})
	log := c.waitPushes(t, 1)
	if l := rdb.XLen(context.Background(), b.keys.log).Val(); l >= n || l < 10 {
		t.Fatalf("log holds %d entries", l)
	}
	last := log[len(log)-1].Pos
	if lost, err := b.Replay(context.Background(), log[0].Pos, last, func(sente.Push) {}); err != nil || !lost {
		t.Errorf("Replay from a trimmed position: lost %v, %v", lost, err)
	}
	var got []sente.Push
	tail := log[len(log)-6:]
	if lost, err := b.Replay(context.Background(), tail[0].Pos, last, func(p sente.Push) { got = append(got, p) }); err != nil || lost || len(got) != 5 || got[0].Pos != tail[1].Pos || string(got[4].Event) != fmt.Sprint(n-1) {
		t.Errorf("Replay of the last 5: lost %v, %v, %+v", lost, err, got)
	}

	// By age.
	a := newNode(t, redisURL(), Options{Prefix: testPrefix(t, rdb), HistoryAge: 50 * time.Millisecond})
	ca, _, _ := subscribe(t, a)
	for i := range 250 {
		if err := a.Publish(context.Background(), push("u", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	first := ca.waitPushes(t, 1)[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := a.Publish(context.Background(), push("u", "later")); err != nil {
			t.Fatal(err)
		}
		last := ca.waitPushes(t, 1)
		lost, err := a.Replay(context.Background(), first.Pos, last[len(last)-1].Pos, func(sente.Push) {})
		if err != nil {
			t.Fatal(err)
		}
		if lost {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the log was not trimmed by age")
		}
		time.Sleep(20 * time.Millisecond) // let entries age
	}
}

// A log that Redis lost (here: deleted) starts a new epoch: old positions
// are lost, and subscribed nodes go on with the new history.
func TestEpochChange(t *testing.T) {
	rdb := needRedis(t)
	opts := Options{Prefix: testPrefix(t, rdb)}
	a := newNode(t, redisURL(), opts)
	b := newNode(t, redisURL(), opts)
	ca, start, _ := subscribe(t, a)
	cb, _, _ := subscribe(t, b)
	for i := range 3 {
		if err := a.Publish(context.Background(), push("u", fmt.Sprint("old", i))); err != nil {
			t.Fatal(err)
		}
	}
	old := ca.waitPushes(t, 3)
	cb.waitPushes(t, 3)

	for _, keys := range [][]string{{a.keys.log}, {a.keys.log, a.keys.epoch}, {a.keys.epoch}} {
		rdb.Del(context.Background(), keys...)
		if err := b.Publish(context.Background(), push("u", "new")); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*collector{ca, cb} {
			got := c.waitPushes(t, len(old)+1)
			p := got[len(got)-1]
			if len(got) != len(old)+1 || string(p.Event) != "new" || p.Pos.Epoch == old[len(old)-1].Pos.Epoch {
				t.Fatalf("after deleting %v: got %+v", keys, got[len(old):])
			}
			if len(got) > 1 && p.Pos.Epoch == got[len(got)-2].Pos.Epoch {
				t.Fatalf("after deleting %v: no new epoch: %+v", keys, got)
			}
		}
		old = ca.waitPushes(t, len(old)+1)
		if lost, err := a.Replay(context.Background(), start, old[len(old)-2].Pos, func(sente.Push) {}); err != nil || !lost {
			t.Errorf("Replay from the old epoch: lost %v, %v", lost, err)
		}
		start = old[len(old)-1].Pos
	}
	// The new history replays.
	if err := a.Publish(context.Background(), push("u", "more")); err != nil {
		t.Fatal(err)
	}
	last := ca.waitPushes(t, len(old)+1)
	var got []sente.Push
	if lost, err := a.Replay(context.Background(), last[len(last)-2].Pos, last[len(last)-1].Pos, func(p sente.Push) { got = append(got, p) }); err != nil || lost || len(got) != 1 || string(got[0].Event) != "more" {
		t.Errorf("Replay in the new epoch: lost %v, %v, %+v", lost, err, got)
	}
}

// Entries that are not the broker's are logged and skipped, by readers and
// by Replay.
func TestCorruptEntries(t *testing.T) {
	rdb := needRedis(t)
	var logs logBuffer
	a := newNode(t, redisURL(), Options{Prefix: testPrefix(t, rdb), Logger: logs.logger()})
	c, start, _ := subscribe(t, a)
	ctx := context.Background()
	add := func(fields ...any) {
		if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: a.keys.log, Values: fields}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	e := start.Epoch
	add("junk", "1")
	add("e", e, "p", "91 0:1:xbad target")
	add("e", e, "p", "1x1:1:xbad flush")
	add("e", e, "p", "105:0:xy")   // to too short
	add("e", e, "p", "101:5:xabc") // event too short
	add("e", e, "p", "10:")        // no length
	add("e", e, "p", "10-1:0:x")
	add("e", e, "p", "10x:0:x")
	add("e", e, "p", "101:1:xa9")           // a second push cut short: nothing of it
	add("e", e)                             // no push
	add("e", e, "p", "101:0:x", "extra", 1) // a field too many
	add("e", e, "p", 10_7)                  // "107": no colon
	add("e", e, "p", "300:1:7201:1:u8")     // to all, event "7"; to client u, "8": fine
	add("e", "someone-else", "p", "101:7:xforeign")
	if err := a.Publish(ctx, push("u", "good")); err != nil {
		t.Fatal(err)
	}
	got := c.waitPushes(t, 3)
	if len(got) != 3 || string(got[0].Event) != "7" || got[0].To != "" || got[0].Target != sente.ToAll ||
		string(got[1].Event) != "8" || got[1].To != "u" || got[1].Target != sente.ToClient || got[1].Pos.Seq != got[0].Pos.Seq+1 ||
		string(got[2].Event) != "good" || got[2].To != "u" {
		t.Fatalf("got %+v", got)
	}
	var replayed []string
	lost, err := a.Replay(ctx, start, got[2].Pos, func(p sente.Push) { replayed = append(replayed, string(p.Event)) })
	if err != nil || lost || !slices.Equal(replayed, []string{"7", "8", "good"}) {
		t.Fatalf("Replay: lost %v, %v, %q", lost, err, replayed)
	}
	// From the middle of an entry: its later pushes only.
	replayed = nil
	lost, err = a.Replay(ctx, got[0].Pos, got[2].Pos, func(p sente.Push) { replayed = append(replayed, string(p.Event)) })
	if err != nil || lost || !slices.Equal(replayed, []string{"8", "good"}) {
		t.Fatalf("Replay from inside an entry: lost %v, %v, %q", lost, err, replayed)
	}
	out := logs.String()
	if n := strings.Count(out, "skipping a corrupt log entry"); n != 24 {
		t.Errorf("%d corrupt entries logged, want 12 by the reader and 12 by the first Replay:\n%s", n, out)
	}
	if !strings.Contains(out, "unknown epoch") {
		t.Errorf("the foreign epoch was not logged:\n%s", out)
	}
}

// Presence: a user opens and closes once across nodes, clients move between
// nodes without closing, and a non-owner's Disconnect does nothing.
func TestPresence(t *testing.T) {
	rdb := needRedis(t)
	opts := Options{Prefix: testPrefix(t, rdb)}
	a := newNode(t, redisURL(), opts)
	b := newNode(t, redisURL(), opts)
	ctx := context.Background()
	step := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: %v, %v; want %v", what, got, err, want)
		}
	}
	users := func(want ...string) {
		t.Helper()
		for _, n := range []*Broker{a, b} {
			got, err := n.Users(ctx)
			if err != nil || !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("Users() = %q, %v; want %q", got, err, want)
			}
		}
	}
	users()
	opened, err := a.Connect(ctx, "u1", "c1")
	step("a connects c1", opened, err, true)
	opened, err = a.Connect(ctx, "u1", "c1")
	step("a connects c1 again", opened, err, false)
	opened, err = b.Connect(ctx, "u1", "c2")
	step("b connects c2", opened, err, false)
	opened, err = b.Connect(ctx, "u2", "c3")
	step("b connects c3 of u2", opened, err, true)
	users("u1", "u2")
	opened, err = b.Connect(ctx, "u1", "c1")
	step("c1 moves to b", opened, err, false)
	closed, err := a.Disconnect(ctx, "u1", "c1")
	step("a disconnects c1, now b's", closed, err, false)
	closed, err = a.Disconnect(ctx, "u1", "nobody")
	step("a disconnects an unknown client", closed, err, false)
	closed, err = b.Disconnect(ctx, "u2", "c1")
	step("b disconnects c1 with the wrong user", closed, err, false)
	users("u1", "u2")
	closed, err = b.Disconnect(ctx, "u1", "c1")
	step("b disconnects c1", closed, err, false)
	closed, err = b.Disconnect(ctx, "u1", "c1")
	step("b disconnects c1 again", closed, err, false)
	closed, err = b.Disconnect(ctx, "u1", "c2")
	step("b disconnects c2, u1's last", closed, err, true)
	users("u2")
	// The same client id under two users counts for both.
	opened, err = a.Connect(ctx, "u3", "c3")
	step("a connects c3 of u3", opened, err, true)
	closed, err = b.Disconnect(ctx, "u2", "c3")
	step("b disconnects c3 of u2", closed, err, true)
	users("u3")
	closed, err = a.Disconnect(ctx, "u3", "c3")
	step("a disconnects c3 of u3", closed, err, true)
	users()
}

// Concurrent connects and disconnects of one user on 3 nodes: the user
// opens and closes exactly as often as the counts say.
func TestPresenceConcurrent(t *testing.T) {
	rdb := needRedis(t)
	opts := Options{Prefix: testPrefix(t, rdb)}
	var nodes []*Broker
	for range 3 {
		nodes = append(nodes, newNode(t, redisURL(), opts))
	}
	var opens, closes sync.Map
	var wg sync.WaitGroup
	for i, n := range nodes {
		for w := range 8 {
			wg.Go(func() {
				for k := range 30 {
					id := fmt.Sprintf("c%d-%d-%d", i, w, k)
					opened, err := n.Connect(context.Background(), "u", id)
					if err != nil {
						t.Error(err)
						return
					}
					closed, err := n.Disconnect(context.Background(), "u", id)
					if err != nil {
						t.Error(err)
						return
					}
					if opened {
						opens.Store(id, true)
					}
					if closed {
						closes.Store(id, true)
					}
				}
			})
		}
	}
	wg.Wait()
	count := func(m *sync.Map) (n int) {
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	if o, c := count(&opens), count(&closes); o == 0 || o != c {
		t.Errorf("%d opens, %d closes", o, c)
	}
	if u, err := nodes[0].Users(context.Background()); err != nil || len(u) != 0 {
		t.Errorf("Users() = %q, %v", u, err)
	}
}

// A node that stops (its Subscribe ends, it is closed, nobody disconnects
// its clients) loses them when its liveness expires: the other nodes report
// each exactly once.
func TestNodeDeath(t *testing.T) {
	rdb := needRedis(t)
	var logs logBuffer
	opts := Options{Prefix: testPrefix(t, rdb), NodeTTL: 900 * time.Millisecond, Logger: logs.logger()}
	a := newNode(t, redisURL(), opts)
	b := newNode(t, redisURL(), opts)
	dying := newNode(t, redisURL(), opts)
	ca, _, _ := subscribe(t, a)
	cb, _, _ := subscribe(t, b)
	_, _, stop := subscribe(t, dying)
	ctx := context.Background()
	for _, c := range [][2]string{{"u1", "c1"}, {"u1", "c2"}, {"u2", "c3"}} {
		if _, err := dying.Connect(ctx, c[0], c[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Connect(ctx, "u1", "c4"); err != nil {
		t.Fatal(err)
	}
	stop()
	dying.Close()
	if u, _ := a.Users(ctx); !slices.Equal(u, []string{"u1", "u2"}) {
		t.Fatalf("users right after the node stopped: %q", u)
	}

	// Wait for the 3 reports, from either node.
	var all []sente.Presence
	deadline := time.Now().Add(10 * time.Second)
	for {
		all = append(ca.presences(), cb.presences()...)
		if len(all) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports: %+v\n%s", all, logs.String())
		}
		select {
		case <-ca.changed:
		case <-cb.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Give the nodes two more rounds to report anything twice.
	time.Sleep(2 * opts.NodeTTL / 3)
	all = append(ca.presences(), cb.presences()...)
	slices.SortFunc(all, func(x, y sente.Presence) int { return strings.Compare(x.ClientID, y.ClientID) })
	want := []sente.Presence{
		{Kind: sente.ClientGone, UserID: "u1", ClientID: "c1"},
		{Kind: sente.ClientGone, UserID: "u1", ClientID: "c2"},
		{Kind: sente.ClientGone, UserID: "u2", ClientID: "c3", UserClosed: true},
	}
	if !slices.Equal(all, want) {
		t.Fatalf("reports %+v, want %+v", all, want)
	}
	if u, _ := a.Users(ctx); !slices.Equal(u, []string{"u1"}) {
		t.Errorf("users: %q", u)
	}
	if n := rdb.ZCard(ctx, a.keys.nodes).Val(); n != 2 {
		t.Errorf("%d nodes in %s, want 2", n, a.keys.nodes)
	}
	if n := rdb.Exists(ctx, a.keys.nodePrefix+dying.NodeID()).Val(); n != 0 {
		t.Errorf("the dead node's set is still there")
	}
}

// A node that others took for dead (its record expired) records its
// clients again, reporting the users it opens. The nodes' upkeep is driven
// by hand here, to order it.
func TestNodeComesBack(t *testing.T) {
	rdb := needRedis(t)
	opts := Options{Prefix: testPrefix(t, rdb)}
	a := newNode(t, redisURL(), opts)
	b := newNode(t, redisURL(), opts)
	ca, cb := newCollector(), newCollector()
	ctx := context.Background()
	for _, n := range []*Broker{a, b} {
		if err := n.beat(ctx, sente.Handler{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range [][2]string{{"u1", "c1"}, {"u2", "c2"}} {
		if _, err := b.Connect(ctx, c[0], c[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Connect(ctx, "u2", "c3"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Connect(ctx, "u2", "c2"); err != nil { // c2 moves to a
		t.Fatal(err)
	}
	// b's record expires (as if b stalled).
	rdb.ZAdd(ctx, a.keys.nodes, goredis.Z{Score: 1, Member: b.NodeID()})
	if err := b.reap(ctx, cb.handler()); err != nil || len(cb.presences()) != 0 {
		t.Fatalf("b reaped itself: %v, %+v", err, cb.presences())
	}
	if err := a.beat(ctx, ca.handler()); err != nil {
		t.Fatal(err)
	}
	gone := ca.presences()
	slices.SortFunc(gone, func(x, y sente.Presence) int { return strings.Compare(x.ClientID, y.ClientID) })
	if want := []sente.Presence{
		{Kind: sente.ClientGone, UserID: "u1", ClientID: "c1", UserClosed: true},
	}; !slices.Equal(gone, want) {
		t.Errorf("a reported %+v, want %+v", gone, want)
	}
	if u, _ := a.Users(ctx); !slices.Equal(u, []string{"u2"}) {
		t.Errorf("users after the reaping: %q", u)
	}
	if err := b.beat(ctx, cb.handler()); err != nil {
		t.Fatal(err)
	}
	if got, want := cb.presences(), []sente.Presence{{Kind: sente.UserOpened, UserID: "u1"}}; !slices.Equal(got, want) {
		t.Errorf("b reported %+v, want %+v", got, want)
	}
	if u, _ := a.Users(ctx); !slices.Equal(u, []string{"u1", "u2"}) {
		t.Errorf("users: %q", u)
	}
	// b restored c1, and left c2 to a, which connected it last.
	if owner := rdb.HGet(ctx, a.keys.clients, member("u1", "c1")).Val(); owner != b.NodeID() {
		t.Errorf("c1 is %q's, want b's", owner)
	}
	if owner := rdb.HGet(ctx, a.keys.clients, member("u2", "c2")).Val(); owner != a.NodeID() {
		t.Errorf("c2 is %q's, want a's", owner)
	}
	// Both alive: nothing more to report.
	for _, n := range []*Broker{a, b} {
		if err := n.beat(ctx, sente.Handler{Presence: func(p sente.Presence) { t.Errorf("reported %+v", p) }}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClosed(t *testing.T) {
	rdb := needRedis(t)
	b := newNode(t, redisURL(), Options{Prefix: testPrefix(t, rdb)})
	c, _, _ := subscribe(t, b)
	if err := b.Publish(context.Background(), push("u", "x")); err != nil {
		t.Fatal(err)
	}
	c.waitPushes(t, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	if err := b.Publish(ctx, push("u", "x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	if _, err := b.Connect(ctx, "u", "c"); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
	if _, err := b.Subscribe(ctx, sente.Handler{Push: func(sente.Push) {}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	// A Publish whose ctx ends returns at once.
	d := newNode(t, "redis://127.0.0.1:1/0", Options{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Publish(cctx, push("u", "x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with an ended ctx: %v", err)
	}
}

// A history replaced by one whose ids are below the reader's cursor (a
// server whose clock went back) is found when the reader idles, and read
// from its start.
func TestEpochBelowCursor(t *testing.T) {
	rdb := needRedis(t)
	a := newNode(t, redisURL(), Options{Prefix: testPrefix(t, rdb)})
	c, _, _ := subscribe(t, a)
	if err := a.Publish(context.Background(), push("u", "old")); err != nil {
		t.Fatal(err)
	}
	c.waitPushes(t, 1)
	ctx := context.Background()
	rdb.Del(ctx, a.keys.log)
	rdb.Set(ctx, a.keys.epoch, "replaced", 0)
	rdb.XAdd(ctx, &goredis.XAddArgs{Stream: a.keys.log, ID: "1-1", Values: []any{"e", "replaced", "p", "100:5:first"}})
	rdb.XAdd(ctx, &goredis.XAddArgs{Stream: a.keys.log, ID: "1-2", Values: []any{"e", "replaced", "p", "100:6:second"}})
	got := c.waitPushes(t, 3)
	if string(got[1].Event) != "first" || got[1].Pos != (sente.Position{Epoch: "replaced", Seq: 1<<22 | 1<<10}) || string(got[2].Event) != "second" {
		t.Fatalf("got %+v", got)
	}
}

// A node that falls more than History entries behind misses pushes, and
// says so.
func TestReaderFallsBehind(t *testing.T) {
	rdb := needRedis(t)
	var logs logBuffer
	opts := Options{Prefix: testPrefix(t, rdb), History: 10, Logger: logs.logger()}
	a := newNode(t, redisURL(), opts)
	const n = 450
	first, release, last := make(chan struct{}), make(chan struct{}), make(chan struct{})
	count := 0 // pushes delivered, by the one goroutine that delivers
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := a.Subscribe(ctx, sente.Handler{Push: func(p sente.Push) {
		count++
		switch {
		case count == 1:
			close(first)
			<-release // stuck, as a node too busy to read
		case string(p.Event) == fmt.Sprint(n-1):
			close(last)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := a.Publish(context.Background(), push("u", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-first
		}
	}
	close(release)
	select {
	case <-last:
	case <-time.After(10 * time.Second):
		t.Fatal("the last push did not arrive")
	}
	if count >= n { // read after last closed, by the delivering goroutine
		t.Errorf("got all %d pushes", count)
	}
	if !strings.Contains(logs.String(), "fell behind the log") {
		t.Errorf("no log of it:\n%s", logs.String())
	}
}
