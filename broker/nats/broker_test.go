package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/wsasync/wsasync/sente"
)

// samePushes fails t unless a and b hold the same pushes, positions
// included, with positions strictly growing after start.
func samePushes(t *testing.T, name string, a, b []sente.Push, start sente.Position) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d pushes, want %d", name, len(b), len(a))
	}
	prev := start
	for i := range a {
		x, y := a[i], b[i]
		if x.Pos != y.Pos || x.Target != y.Target || x.To != y.To || x.Flush != y.Flush || string(x.Event) != string(y.Event) {
			t.Fatalf("%s: push %d = %+v, want %+v", name, i, y, x)
		}
		if y.Pos.Epoch != prev.Epoch || y.Pos.Seq <= prev.Seq {
			t.Fatalf("%s: push %d at %v after %v", name, i, y.Pos, prev)
		}
		prev = y.Pos
	}
}

func TestOrderOnThreeNodes(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	nodes := []*node{
		newNode(t, url, Options{Prefix: prefix}).subscribe(),
		newNode(t, url, Options{Prefix: prefix}).subscribe(),
		newNode(t, url, Options{Prefix: prefix}).subscribe(),
	}
	// Every node publishes, in turn and then all at once; targets, To and
	// Flush travel.
	ctx := ctxT(t)
	targets := []sente.Target{sente.ToUser, sente.ToClient, sente.ToAll}
	for i := range 30 {
		p := sente.Push{Target: targets[i%3], To: fmt.Sprintf("to-%d", i), Event: []byte(fmt.Sprintf("ev-%d", i)), Flush: i%2 == 0}
		if err := nodes[i%3].Publish(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for k, n := range nodes {
		wg.Go(func() {
			for i := range 50 {
				if err := n.Publish(ctx, sente.Push{Target: sente.ToAll, Event: []byte(fmt.Sprintf("n%d-%d", k, i))}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	const total = 30 + 3*50
	want := nodes[0].waitPushes(total)
	if want[0].Pos.Epoch != nodes[0].start.Epoch {
		t.Fatalf("epoch %q, subscribe said %q", want[0].Pos.Epoch, nodes[0].start.Epoch)
	}
	for i, n := range nodes {
		if n.start != nodes[0].start && n.start.Seq > want[0].Pos.Seq {
			t.Fatalf("node %d started at %v, after the first push %v", i, n.start, want[0].Pos)
		}
		samePushes(t, fmt.Sprintf("node %d", i), want, n.waitPushes(total), n.start)
	}
	for i := range 30 {
		p := want[i]
		if string(p.Event) != fmt.Sprintf("ev-%d", i) || p.To != fmt.Sprintf("to-%d", i) || p.Target != targets[i%3] || p.Flush != (i%2 == 0) {
			t.Fatalf("push %d = %+v", i, p)
		}
	}
	// Each publisher's pushes keep its order.
	for k := range nodes {
		var got []string
		for _, p := range want[30:] {
			if strings.HasPrefix(string(p.Event), fmt.Sprintf("n%d-", k)) {
				got = append(got, string(p.Event))
			}
		}
		for i, ev := range got {
			if ev != fmt.Sprintf("n%d-%d", k, i) {
				t.Fatalf("publisher %d: push %d is %s", k, i, ev)
			}
		}
	}
}

func TestConcurrentPublishers(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	nodes := []*node{
		newNode(t, url, Options{Prefix: prefix}).subscribe(),
		newNode(t, url, Options{Prefix: prefix}).subscribe(),
		newNode(t, url, Options{Prefix: prefix}).subscribe(),
	}
	const publishers, each = 48, 100
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for g := range publishers {
		wg.Go(func() {
			for i := range each {
				ev := fmt.Sprintf("g%d-%d", g, i)
				if err := nodes[g%3].Publish(ctx, sente.Push{Target: sente.ToUser, To: "u", Event: []byte(ev)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := nodes[0].waitPushes(publishers * each)
	for i, n := range nodes {
		samePushes(t, fmt.Sprintf("node %d", i), want, n.waitPushes(publishers*each), n.start)
	}
	seen := make(map[string]bool)
	batched := 0
	for i, p := range want {
		if seen[string(p.Event)] {
			t.Fatalf("%s twice", p.Event)
		}
		seen[string(p.Event)] = true
		if i > 0 && p.Pos.Seq>>idxBits == want[i-1].Pos.Seq>>idxBits {
			batched++
		}
	}
	t.Logf("%d pushes, %d of them in a message with the one before", len(want), batched)
}

func TestReplay(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	a := newNode(t, url, Options{Prefix: prefix}).subscribe()
	b := newNode(t, url, Options{Prefix: prefix})
	ctx := ctxT(t)
	for i := range 20 {
		a.publish(fmt.Sprintf("s%d", i))
	}
	// Concurrent ones, so that messages hold several pushes.
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 10 {
				if err := a.Publish(ctx, sente.Push{Target: sente.ToAll, Event: []byte(fmt.Sprintf("c%d-%d", g, i))}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	all := a.waitPushes(220)
	replay := func(from, to sente.Position) ([]sente.Push, bool) {
		t.Helper()
		var got []sente.Push
		lost, err := b.Replay(ctx, from, to, func(p sente.Push) { got = append(got, p) })
		if err != nil {
			t.Fatal(err)
		}
		return got, lost
	}
	for _, r := range [][2]int{{-1, 219}, {4, 15}, {0, 0}, {19, 219}, {100, 101}, {150, 200}, {218, 219}} {
		from := a.start
		if r[0] >= 0 {
			from = all[r[0]].Pos
		}
		got, lost := replay(from, all[r[1]].Pos)
		if lost {
			t.Fatalf("replay %v: lost", r)
		}
		samePushes(t, fmt.Sprintf("replay %v", r), all[r[0]+1:r[1]+1], got, from)
	}
	// Up to the node's start position of later: everything.
	if got, lost := replay(a.start, sente.Position{Epoch: a.start.Epoch, Seq: (all[219].Pos.Seq>>idxBits + 1) << idxBits}); lost || len(got) != 220 {
		t.Fatalf("replay to the end: %d pushes, lost %v", len(got), lost)
	}
	// From nowhere, or another epoch: lost.
	if _, lost := replay(sente.Position{}, all[10].Pos); !lost {
		t.Fatal("replay from the zero position: not lost")
	}
	if got, lost := replay(sente.Position{Epoch: "other", Seq: all[3].Pos.Seq}, all[10].Pos); !lost || len(got) != 0 {
		t.Fatalf("replay from another epoch: lost %v, %d pushes", lost, len(got))
	}
}

func TestReplayLostAfterTrim(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	a := newNode(t, url, Options{Prefix: prefix, History: 5}).subscribe()
	for i := range 20 {
		a.publish(fmt.Sprintf("p%d", i)) // one message each
		a.waitPushes(i + 1)              // read before it is trimmed
	}
	all := a.waitPushes(20)
	ctx := ctxT(t)
	var got []sente.Push
	lost, err := a.Replay(ctx, all[2].Pos, all[19].Pos, func(p sente.Push) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	if !lost {
		t.Fatal("replay over trimmed messages: not lost")
	}
	samePushes(t, "what is left", all[15:], got, all[14].Pos)
	got = nil
	lost, err = a.Replay(ctx, all[15].Pos, all[19].Pos, func(p sente.Push) { got = append(got, p) })
	if err != nil || lost {
		t.Fatalf("replay within the history: lost %v, %v", lost, err)
	}
	samePushes(t, "within", all[16:], got, all[15].Pos)
	// Up to a position that no longer is there.
	if lost, err := a.Replay(ctx, all[0].Pos, all[3].Pos, func(sente.Push) { t.Fatal("push") }); err != nil || !lost {
		t.Fatalf("replay of trimmed messages only: lost %v, %v", lost, err)
	}
}

func TestEpochChange(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	_, js := admin(t, url)
	a := newNode(t, url, Options{Prefix: prefix}).subscribe()
	b := newNode(t, url, Options{Prefix: prefix}).subscribe()
	a.publish("old")
	old := b.waitPushes(1)[0]
	ctx := ctxT(t)
	if err := js.DeleteStream(ctx, prefix+"_LOG"); err != nil {
		t.Fatal(err)
	}
	// The first publish after the stream is gone makes a new one (a
	// reader may have made it already); delivery goes on with it, from
	// its start.
	a.publish("new")
	got := b.waitPushes(2)
	p := got[1]
	if string(p.Event) != "new" || p.Pos.Epoch == old.Pos.Epoch {
		t.Fatalf("after the stream was replaced: %+v (old %v)", p, old.Pos)
	}
	if p.Pos.Seq != 1<<idxBits|1 {
		t.Fatalf("first push of the new history at %v", p.Pos)
	}
	if ga := a.waitPushes(2); ga[0].Pos != got[0].Pos || ga[1].Pos != got[1].Pos || string(ga[1].Event) != "new" {
		t.Fatalf("node a got %+v, node b %+v", ga, got)
	}
	lost, err := b.Replay(ctx, old.Pos, p.Pos, func(sente.Push) { t.Fatal("push") })
	if err != nil || !lost {
		t.Fatalf("replay from the old epoch: lost %v, %v", lost, err)
	}
	lost, err = b.Replay(ctx, sente.Position{Epoch: p.Pos.Epoch}, p.Pos, func(sente.Push) {})
	if err != nil || lost {
		t.Fatalf("replay of the new epoch from its start: lost %v, %v", lost, err)
	}
}

// TestStreamRecreatedSameEpoch makes the log stream again with the same
// description, as a restore of its configuration would: its sequence starts
// over under the old epoch. The nodes must give it a new epoch and deliver
// its pushes, not skip them as already delivered, and old positions must be
// reported lost.
func TestStreamRecreatedSameEpoch(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	_, js := admin(t, url)
	a := newNode(t, url, Options{Prefix: prefix}).subscribe()
	b := newNode(t, url, Options{Prefix: prefix}).subscribe()
	for _, ev := range []string{"old1", "old2", "old3"} {
		a.publish(ev)
	}
	old := b.waitPushes(3)[2]
	ctx := ctxT(t)
	s, err := js.Stream(ctx, prefix+"_LOG")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if err := js.DeleteStream(ctx, prefix+"_LOG"); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	a.publish("new")
	got := b.waitPushes(4)
	p := got[3]
	if string(p.Event) != "new" || !p.Gap || p.Pos.Epoch == old.Pos.Epoch {
		t.Fatalf("after the stream was made again: %+v (old %v)", p, old.Pos)
	}
	lost, err := b.Replay(ctx, old.Pos, p.Pos, func(sente.Push) { t.Fatal("push") })
	if err != nil || !lost {
		t.Fatalf("replay from before: lost %v, %v", lost, err)
	}
}

func TestSubscribePosition(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	a := newNode(t, url, Options{Prefix: prefix}).subscribe()
	a.publish("before")
	before := a.waitPushes(1)[0]
	b := newNode(t, url, Options{Prefix: prefix}).subscribe()
	if b.start.Epoch != before.Pos.Epoch || b.start.Seq <= before.Pos.Seq {
		t.Fatalf("subscribed at %v after a push at %v", b.start, before.Pos)
	}
	a.publish("after")
	got := b.waitPushes(1)
	if string(got[0].Event) != "after" || got[0].Pos.Seq <= b.start.Seq {
		t.Fatalf("first push delivered: %+v (start %v)", got[0], b.start)
	}
	// From the start position, a replay up to it holds nothing and
	// nothing is lost.
	lost, err := b.Replay(ctxT(t), before.Pos, b.start, func(p sente.Push) { t.Fatalf("replayed %+v", p) })
	if err != nil || lost {
		t.Fatalf("replay: lost %v, %v", lost, err)
	}
	if _, err := b.Subscribe(context.Background(), sente.Handler{Push: func(sente.Push) {}}); !errors.Is(err, errSubscribed) {
		t.Fatalf("second Subscribe: %v", err)
	}
}

func TestPresence(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	a := newNode(t, url, Options{Prefix: prefix}).subscribe()
	b := newNode(t, url, Options{Prefix: prefix}).subscribe()
	c := newNode(t, url, Options{Prefix: prefix})
	ctx := ctxT(t)
	step := func(name string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: %v, %v; want %v", name, got, err, want)
		}
	}
	users := func(want ...string) {
		t.Helper()
		got, err := c.Users(ctx)
		if err != nil || !slices.Equal(got, want) && len(got)+len(want) > 0 {
			t.Fatalf("users %q, %v; want %q", got, err, want)
		}
	}
	users()
	opened, err := a.Connect(ctx, "ada", "c1")
	step("a connects ada/c1", opened, err, true)
	opened, err = a.Connect(ctx, "ada", "c1") // again: no change
	step("a connects ada/c1 again", opened, err, false)
	opened, err = b.Connect(ctx, "ada", "c2")
	step("b connects ada/c2", opened, err, false)
	opened, err = b.Connect(ctx, "", "anon") // an empty user id is a user too
	step("b connects an anonymous client", opened, err, true)
	users("", "ada")
	// c1 moves to b: no close, no open.
	opened, err = b.Connect(ctx, "ada", "c1")
	step("b takes ada/c1", opened, err, false)
	closed, err := a.Disconnect(ctx, "ada", "c1") // a no longer owns it
	step("a disconnects ada/c1", closed, err, false)
	closed, err = b.Disconnect(ctx, "bob", "c1") // not bob's
	step("b disconnects bob/c1", closed, err, false)
	users("", "ada")
	closed, err = b.Disconnect(ctx, "ada", "c1")
	step("b disconnects ada/c1", closed, err, false)
	closed, err = b.Disconnect(ctx, "ada", "c1")
	step("b disconnects ada/c1 again", closed, err, false)
	closed, err = b.Disconnect(ctx, "ada", "c2")
	step("b disconnects ada/c2", closed, err, true)
	closed, err = b.Disconnect(ctx, "", "anon")
	step("b disconnects the anonymous client", closed, err, true)
	users()
	opened, err = c.Connect(ctx, "ada", "c3")
	step("c connects ada/c3 after", opened, err, true)
	closed, err = c.Disconnect(ctx, "ada", "c3")
	step("c disconnects ada/c3", closed, err, true)

	// Concurrent: exactly one open and one close per user, from three
	// nodes with many clients each.
	nodes := []*node{a, b, c}
	var (
		mu             sync.Mutex
		opens, closes  = map[string]int{}, map[string]int{}
		wg             sync.WaitGroup
		uids           = []string{"u1", "u2", "ü/ñ.*>"}
		clientsPerNode = 4
	)
	for k, n := range nodes {
		for _, uid := range uids {
			for i := range clientsPerNode {
				wg.Go(func() {
					opened, err := n.Connect(ctx, uid, fmt.Sprintf("%s-%d-%d", uid, k, i))
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					if opened {
						opens[uid]++
					}
					mu.Unlock()
				})
			}
		}
	}
	wg.Wait()
	users(uids...)
	for k, n := range nodes {
		for _, uid := range uids {
			for i := range clientsPerNode {
				wg.Go(func() {
					closed, err := n.Disconnect(ctx, uid, fmt.Sprintf("%s-%d-%d", uid, k, i))
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					if closed {
						closes[uid]++
					}
					mu.Unlock()
				})
			}
		}
	}
	wg.Wait()
	for _, uid := range uids {
		if opens[uid] != 1 || closes[uid] != 1 {
			t.Fatalf("%q opened %d times, closed %d times", uid, opens[uid], closes[uid])
		}
	}
	users()
	if p := append(a.presences(), b.presences()...); len(p) > 0 {
		t.Fatalf("presence reported with every node alive: %+v", p)
	}
}

func TestNodeDeath(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	opts := Options{Prefix: prefix, NodeTTL: time.Second}
	a := newNode(t, url, opts).subscribe()
	b := newNode(t, url, opts).subscribe()
	c := newNode(t, url, opts).subscribe()
	ctx := ctxT(t)
	for _, cl := range [][2]string{{"ada", "a1"}, {"ada", "a2"}, {"bob", "a3"}} {
		if _, err := a.Connect(ctx, cl[0], cl[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Connect(ctx, "bob", "b1"); err != nil {
		t.Fatal(err)
	}
	// a stops without disconnecting: after its TTL, b or c removes its
	// clients, each reported once.
	a.cancel()
	a.Close()
	gone := func() []sente.Presence { return append(b.presences(), c.presences()...) }
	deadline := time.Now().Add(15 * time.Second)
	for len(gone()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after a's death: %+v", gone())
		}
		select {
		case <-b.changed:
		case <-c.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Two more reaper rounds of each node: no report twice.
	time.Sleep(2 * opts.NodeTTL / 3)
	got := gone()
	slices.SortFunc(got, func(x, y sente.Presence) int { return strings.Compare(x.ClientID, y.ClientID) })
	want := []sente.Presence{
		{Kind: sente.ClientGone, UserID: "ada", ClientID: "a1", UserClosed: false},
		{Kind: sente.ClientGone, UserID: "ada", ClientID: "a2", UserClosed: true},
		{Kind: sente.ClientGone, UserID: "bob", ClientID: "a3", UserClosed: false},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reported %+v, want %+v", got, want)
	}
	users, err := b.Users(ctx)
	if err != nil || !slices.Equal(users, []string{"bob"}) {
		t.Fatalf("users %q, %v", users, err)
	}
	// The dead node's member entry is gone once reaped.
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, err := b.nodes.Get(ctx, a.node); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dead node still listed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCorruptEntries(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	nc, js := admin(t, url)
	var logs logBuffer
	a := newNode(t, url, Options{Prefix: prefix, Logger: slog.New(slog.NewTextHandler(&logs, nil))}).subscribe()
	ctx := ctxT(t)
	a.publish("first")
	garbage := [][]byte{
		nil,
		[]byte("hello"),
		{formatV1},
		{formatV1, 9, 0, 0, 0},                // unknown target
		{formatV1, 1, 0, 5, 'a'},              // truncated
		{formatV1, 1, 0, 0, 0xff, 0xff, 0xff}, // bad length
	}
	// A plain NATS message first; then the acked ones from the same
	// connection are stored after it.
	if err := nc.Publish(prefix+".log", []byte("core nats, no ack")); err != nil {
		t.Fatal(err)
	}
	for _, g := range garbage {
		if _, err := js.Publish(ctx, prefix+".log", g); err != nil {
			t.Fatal(err)
		}
	}
	a.publish("last")
	got := a.waitPushes(2)
	if len(got) != 2 || string(got[0].Event) != "first" || string(got[1].Event) != "last" {
		t.Fatalf("delivered %q", events(got))
	}
	if n := strings.Count(logs.String(), "corrupt log entry skipped"); n != len(garbage)+1 {
		t.Fatalf("%d corrupt entries logged, want %d:\n%s", n, len(garbage)+1, logs.String())
	}
	// Replay skips them too.
	var replayed []sente.Push
	lost, err := a.Replay(ctx, got[0].Pos, got[1].Pos, func(p sente.Push) { replayed = append(replayed, p) })
	if err != nil || lost || len(replayed) != 1 || string(replayed[0].Event) != "last" {
		t.Fatalf("replay: %q, lost %v, %v", events(replayed), lost, err)
	}
	// A foreign key and a corrupt value in the users bucket.
	if _, err := a.users.Put(ctx, "not-a-user", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.users.Put(ctx, userKey("ada"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	users, err := a.Users(ctx)
	if err != nil || !slices.Equal(users, []string{"ada"}) {
		t.Fatalf("users %q, %v", users, err)
	}
	if opened, err := a.Connect(ctx, "ada", "c1"); err != nil || !opened {
		t.Fatalf("connect over a corrupt entry: %v, %v", opened, err)
	}
	for _, want := range []string{"foreign key in users bucket", "corrupt presence entry replaced"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("no %q in the log:\n%s", want, logs.String())
		}
	}
}

func TestOutage(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	px := startProxy(t, url)
	opts := Options{Prefix: prefix, NodeTTL: time.Second}
	a := newNode(t, px.url(), opts).subscribe() // through the proxy
	b := newNode(t, url, opts).subscribe()
	ctx := ctxT(t)
	if opened, err := a.Connect(ctx, "ada", "c1"); err != nil || !opened {
		t.Fatalf("connect: %v, %v", opened, err)
	}
	if opened, err := a.Connect(ctx, "bob", "c2"); err != nil || !opened {
		t.Fatalf("connect: %v, %v", opened, err)
	}
	b.publish("p0")
	a.waitPushes(1)

	down := a.nc.StatusChanged(nats.RECONNECTING)
	px.setCut(true)
	<-down
	a.nc.RemoveStatusListener(down)
	// Calls fail at once (not at their deadline).
	start := time.Now()
	if err := a.Publish(ctx, sente.Push{Target: sente.ToAll, Event: []byte("lost")}); err == nil || time.Since(start) > time.Second {
		t.Fatalf("publish during the outage: %v after %v", err, time.Since(start))
	}
	if _, err := a.Connect(ctx, "cy", "c3"); err == nil {
		t.Fatal("connect during the outage: no error")
	}
	if _, err := a.Disconnect(ctx, "bob", "c2"); err == nil {
		t.Fatal("disconnect during the outage: no error")
	}
	for i := 1; i <= 10; i++ {
		b.publish(fmt.Sprintf("p%d", i))
	}
	// a's liveness expires: b removes its clients (ada's c1 and bob's c2).
	b.waitFor(10*time.Second, "a's clients gone", func(_ []sente.Push, p []sente.Presence) bool { return len(p) >= 2 })

	px.setCut(false)
	// a delivers what it missed, without gap or duplicate, and records its
	// clients again: ada (c1) and cy (c3) had no client; bob's c2 was
	// disconnected meanwhile.
	samePushes(t, "a after the outage", b.waitPushes(11), a.waitPushes(11), a.start)
	a.waitFor(10*time.Second, "users opened", func(_ []sente.Push, p []sente.Presence) bool { return len(p) >= 2 })
	got := a.presences()
	slices.SortFunc(got, func(x, y sente.Presence) int { return strings.Compare(x.UserID, y.UserID) })
	want := []sente.Presence{
		{Kind: sente.UserOpened, UserID: "ada", ClientID: "c1"},
		{Kind: sente.UserOpened, UserID: "cy", ClientID: "c3"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("a reported %+v, want %+v", got, want)
	}
	gone := b.presences()
	slices.SortFunc(gone, func(x, y sente.Presence) int { return strings.Compare(x.UserID, y.UserID) })
	wantGone := []sente.Presence{
		{Kind: sente.ClientGone, UserID: "ada", ClientID: "c1", UserClosed: true},
		{Kind: sente.ClientGone, UserID: "bob", ClientID: "c2", UserClosed: true},
	}
	if !slices.Equal(gone, wantGone) {
		t.Fatalf("b reported %+v, want %+v", gone, wantGone)
	}
	users, err := b.Users(ctx)
	if err != nil || !slices.Equal(users, []string{"ada", "cy"}) {
		t.Fatalf("users %q, %v", users, err)
	}
	a.publish("back")
	samePushes(t, "b after", a.waitPushes(12), b.waitPushes(12), b.start)
}

// A short outage: the node's liveness survives; what failed is redone.
func TestShortOutage(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	px := startProxy(t, url)
	opts := Options{Prefix: prefix, NodeTTL: 30 * time.Second}
	a := newNode(t, px.url(), opts).subscribe()
	b := newNode(t, url, opts).subscribe()
	ctx := ctxT(t)
	if _, err := a.Connect(ctx, "ada", "c1"); err != nil {
		t.Fatal(err)
	}
	down := a.nc.StatusChanged(nats.RECONNECTING)
	up := a.nc.StatusChanged(nats.CONNECTED)
	px.setCut(true)
	<-down
	if _, err := a.Disconnect(ctx, "ada", "c1"); err == nil {
		t.Fatal("disconnect during the outage: no error")
	}
	if _, err := a.Connect(ctx, "bob", "c2"); err == nil {
		t.Fatal("connect during the outage: no error")
	}
	b.publish("during")
	px.setCut(false)
	<-up
	a.nc.RemoveStatusListener(down)
	a.nc.RemoveStatusListener(up)
	samePushes(t, "a", b.waitPushes(1), a.waitPushes(1), a.start)
	// The failed disconnect is redone (ada's last client: reported gone by
	// a itself), the failed connect too (bob opened).
	a.waitFor(10*time.Second, "presence", func(_ []sente.Push, p []sente.Presence) bool { return len(p) >= 2 })
	got := a.presences()
	slices.SortFunc(got, func(x, y sente.Presence) int { return strings.Compare(x.UserID, y.UserID) })
	want := []sente.Presence{
		{Kind: sente.ClientGone, UserID: "ada", ClientID: "c1", UserClosed: true},
		{Kind: sente.UserOpened, UserID: "bob", ClientID: "c2"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("a reported %+v, want %+v", got, want)
	}
	users, err := b.Users(ctx)
	if err != nil || !slices.Equal(users, []string{"bob"}) {
		t.Fatalf("users %q, %v", users, err)
	}
}

func TestClosed(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	a := newNode(t, url, Options{Prefix: prefix})
	a.Close()
	if err := a.Publish(context.Background(), sente.Push{Target: sente.ToAll}); err == nil {
		t.Fatal("publish after Close: no error")
	}
	if _, err := a.Subscribe(context.Background(), sente.Handler{Push: func(sente.Push) {}}); err == nil {
		t.Fatal("subscribe after Close: no error")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// A node that publishes without reading makes the stream again (with a new
// epoch) when it was deleted.
func TestPublishRecreatesStream(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	_, js := admin(t, url)
	a := newNode(t, url, Options{Prefix: prefix})
	ctx := ctxT(t)
	a.publish("one")
	_, before, err := a.streamInfo(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, prefix+"_LOG"); err != nil {
		t.Fatal(err)
	}
	a.publish("two")
	info, after, err := a.streamInfo(ctx, false)
	if err != nil || after == before || info.State.Msgs != 1 {
		t.Fatalf("after: epoch %q (before %q), %+v, %v", after, before, info.State, err)
	}
}

// A node with another NodeTTL follows the liveness bucket's.
func TestNodeTTLFromBucket(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	a := newNode(t, url, Options{Prefix: prefix, NodeTTL: 3 * time.Second})
	b := newNode(t, url, Options{Prefix: prefix, NodeTTL: time.Minute})
	if a.opts.NodeTTL != 3*time.Second || b.opts.NodeTTL != 3*time.Second {
		t.Fatalf("TTLs %v, %v", a.opts.NodeTTL, b.opts.NodeTTL)
	}
}
