package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsasync/wsasync/bench/internal/measure"
	"github.com/wsasync/wsasync/sente"
)

// ---- part 2: soak with a node killed and the broker restarted ----

type soakConfig struct {
	Broker     string        `json:"broker"`
	Clients    int           `json:"clients"`
	Duration   time.Duration `json:"duration"`
	Rate       int           `json:"rate"`  // pushes per second, all pushers together
	Batch      int           `json:"batch"` // users per /push call (one push each)
	Outage     time.Duration `json:"outage"`
	LBs        int           `json:"lbs"`
	MinBackoff time.Duration `json:"min_backoff"`
	MaxBackoff time.Duration `json:"max_backoff"`
	NodeArgs   []string      `json:"node_args,omitempty"`
}

type soakResult struct {
	Config soakConfig `json:"config"`
	Date   string     `json:"date"`

	ConnectSecs      float64 `json:"connect_secs"`        // all clients open
	PushStartSecs    float64 `json:"push_start_secs"`     // since the soak began
	KillAtSecs       float64 `json:"kill_at_secs"`        // since the soak began
	BrokerKillAtSecs float64 `json:"broker_kill_at_secs"` // since the soak began
	PresentSecs      float64 `json:"present_secs"`        // every user listed by /users

	Attempted     int `json:"attempted"`     // pushes asked for
	Acked         int `json:"acked"`         // in a /push answered 200
	Refused503    int `json:"refused_503"`   // in a /push answered 503 (broker away)
	Failed        int `json:"failed"`        // in a /push that got no answer or another status
	Received      int `json:"received"`      // deliveries counted at the clients (with duplicates)
	Lost          int `json:"lost"`          // acknowledged, never received
	LostSilent    int `json:"lost_silent"`   // of which by clients never told Lost
	Duplicated    int `json:"duplicated"`    // receptions beyond the first of an acknowledged push
	DupUnacked    int `json:"dup_unacked"`   // receptions beyond the first of a push refused with 503
	OutOfOrder    int `json:"out_of_order"`  // a push received after a later one of the same user
	UnackedRecvd  int `json:"unacked_recvd"` // distinct pushes received that were not acknowledged
	LostUsers     int `json:"lost_users"`    // users with at least one lost push
	ToldLost      int `json:"told_lost"`     // clients whose state said Lost at some open
	ToldLostAtEnd int `json:"told_lost_end"` // clients whose State().Lost is true at the end
	Reconnects    int `json:"reconnects"`    // opens after the first, over all clients
	NotOpenAtEnd  int `json:"not_open_end"`

	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	Maxms float64 `json:"max_ms"`

	KilledClients  int               `json:"killed_clients"` // clients open on the killed node
	KillBackSecs   float64           `json:"kill_back_secs"` // kill → every client open again
	BackAfter      []backMark        `json:"back_after"`     // clients open at times after the kill
	OutageSecs     float64           `json:"outage_secs"`    // broker down (kill → started again)
	AckAgainSecs   float64           `json:"ack_again_secs"` // broker started → first push acknowledged again
	ReconnOutage   int               `json:"reconn_outage"`  // reconnects during the broker outage and recovery
	UsersAtEnd     int               `json:"users_at_end"`   // /users of a surviving node at the end
	NodeLogKinds   map[string]int    `json:"node_log_kinds,omitempty"`
	NodeLogExample map[string]string `json:"node_log_example,omitempty"` // the first line of each kind
	SilentDetail   []string          `json:"silent_detail,omitempty"`    // timelines of users that lost pushes silently
	OrderDetail    []string          `json:"order_detail,omitempty"`     // timelines of users that got a push twice or out of order
	MissingUsers   []string          `json:"missing_users,omitempty"`    // connected, but not listed
	MissingDetail  []string          `json:"missing_detail,omitempty"`   // presence events of the first of them
	UserCloses     int               `json:"user_closes"`
	// user opens and closes the nodes reported before the node kill, after
	// it, after the broker kill (the killed node's before it died included)
	UserOpensByPhase  [3]int             `json:"user_opens_by_phase"`
	UserClosesByPhase [3]int             `json:"user_closes_by_phase"` // chsk/uidport-close events on surviving nodes
	DrainSecs         float64            `json:"drain_secs"`           // pushes stopped → every acknowledged push received (or given up)
	NodeLogs          int                `json:"node_logs"`            // warning/error lines of the nodes
	NodeLogSamples    []string           `json:"node_log_samples,omitempty"`
	CPU               map[string]float64 `json:"cpu"` // cores used on average while pushing, by process group
	Errors            []string           `json:"errors,omitempty"`
	Elapsed           string             `json:"elapsed"`
}

type backMark struct {
	After float64 `json:"after"`
	Back  int     `json:"back"` // clients reconnected since the kill
}

type soakProc struct {
	group string
	pid   int
}

// cpuBook accounts the CPU time of the run's processes by group (bench,
// balancers, nodes, broker) while pushes go on, counting processes killed
// meanwhile up to their end, and what the rest of the machine used.
type cpuBook struct {
	procs []soakProc
	used  map[string]float64 // CPU seconds: minus the start, plus the gone
	t0    time.Time
	m0    float64
}

func newCPUBook(procs []soakProc) *cpuBook {
	b := &cpuBook{procs: procs, used: map[string]float64{}, t0: time.Now()}
	b.m0, _ = measure.MachineBusy()
	for _, p := range procs {
		v, _ := measure.ProcCPU(fmt.Sprint(p.pid), false)
		b.used[p.group] -= v
	}
	return b
}

// add counts a process started meanwhile (from its start).
func (b *cpuBook) add(p soakProc) { b.procs = append(b.procs, p) }

// remove counts a process up to now; call it just before killing it.
func (b *cpuBook) remove(pid int) {
	for i, p := range b.procs {
		if p.pid == pid {
			v, _ := measure.ProcCPU(fmt.Sprint(pid), false)
			b.used[p.group] += v
			b.procs = slices.Delete(b.procs, i, i+1)
			return
		}
	}
}

// cores returns the average cores each group used since the start.
func (b *cpuBook) cores() map[string]float64 {
	used := maps.Clone(b.used)
	for _, p := range b.procs {
		v, _ := measure.ProcCPU(fmt.Sprint(p.pid), false)
		used[p.group] += v
	}
	d := time.Since(b.t0).Seconds()
	m, _ := measure.MachineBusy()
	out := map[string]float64{}
	ours := 0.0
	for k, v := range used {
		out[k] = v / d
		ours += v
	}
	out["other processes"] = max(0, (m-b.m0-ours)/d)
	return out
}

// soakClient is the client of one user. One goroutine (run) owns got.
type soakClient struct {
	c     *sente.Client
	mu    sync.Mutex
	got   []int32 // values received, in order
	told  bool    // an open state said Lost
	opens int
	trail []string // what happened to it, with times since the pushes started (for diagnosis)
}

// latency histogram shared by the clients, in shards to spread the locks.
type shardedHist struct {
	shards [16]struct {
		sync.Mutex
		h measure.Hist
	}
}

func (s *shardedHist) add(i int, v int64) {
	sh := &s.shards[i%len(s.shards)]
	sh.Lock()
	sh.h.Add(v)
	sh.Unlock()
}

func (s *shardedHist) merged() *measure.Hist {
	var h measure.Hist
	for i := range s.shards {
		s.shards[i].Lock()
		h.Merge(&s.shards[i].h)
		s.shards[i].Unlock()
	}
	return &h
}

func newSoakClient(wsURL string, i int, cfg soakConfig, lat *shardedHist, outage, reopened *atomic.Int64) *soakClient {
	uid := fmt.Sprintf("u%d", i)
	sc := &soakClient{}
	sc.c = sente.NewClient(wsURL, sente.ClientOptions{
		ClientID:   fmt.Sprintf("c%d", i),
		Params:     url.Values{"u": {uid}},
		MinBackoff: cfg.MinBackoff,
		MaxBackoff: cfg.MaxBackoff,
		Logger:     discard,
	})
	go func() {
		states := sc.c.StateChanges()
		events := sc.c.Events()
		for events != nil || states != nil {
			select {
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				if ev.ID != "s/p" {
					continue
				}
				var v [2]int64
				if ev.Decode(&v) != nil {
					continue
				}
				lat.add(i, time.Now().UnixNano()-v[1])
				sc.mu.Lock()
				sc.got = append(sc.got, int32(v[0]))
				sc.note("got %d (pushed %s)", v[0], since(time.Unix(0, v[1])))
				sc.mu.Unlock()
			case st, ok := <-states:
				if !ok {
					states = nil
					continue
				}
				sc.mu.Lock()
				if st.Open {
					sc.note("open (lost=%v)", st.Lost)
				} else if !st.Stopped {
					sc.note("closed (%v)", closeText(st.LastClose))
				}
				sc.mu.Unlock()
				if st.Open {
					sc.mu.Lock()
					sc.opens++
					if st.Lost {
						sc.told = true
					}
					sc.mu.Unlock()
					if !st.FirstOpen {
						reopened.Add(1)
						if outage.Load() != 0 {
							outage.Add(1)
						}
					}
				}
			}
		}
	}()
	return sc
}

// ackLog is what one pusher had acknowledged, per user it owns.
type ackLog struct {
	acked map[int][]int32  // user index → values acknowledged, increasing
	trail map[int][]string // user index → what was pushed to it, how it went
}

// soakEpoch is when the soak started: the times of the trails count from
// there.
var soakEpoch atomic.Int64

func since(t time.Time) string {
	return fmt.Sprintf("%.3fs", float64(t.UnixNano()-soakEpoch.Load())/1e9)
}

// note adds to the client's trail; sc.mu is held.
func (sc *soakClient) note(format string, a ...any) {
	if len(sc.trail) < 200 {
		sc.trail = append(sc.trail, since(time.Now())+" "+fmt.Sprintf(format, a...))
	}
}

func closeText(ci *sente.CloseInfo) string {
	if ci == nil {
		return "?"
	}
	if ci.Err != nil {
		return fmt.Sprintf("%d %v", ci.Code, ci.Err)
	}
	return fmt.Sprintf("%d %s", ci.Code, ci.Reason)
}

func runSoak(ctx context.Context, bin string, cfg soakConfig, runID string) (res *soakResult, err error) {
	t0 := time.Now()
	soakEpoch.Store(t0.UnixNano())
	res = &soakResult{Config: cfg, Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	defer func() { res.Elapsed = time.Since(t0).Round(time.Second).String() }()
	logf("soak %s: %d clients, %v of pushes at %d/s, %d load balancer processes", cfg.Broker, cfg.Clients, cfg.Duration, cfg.Rate, cfg.LBs)

	pb, err := newPrivateBroker(cfg.Broker)
	if err != nil {
		return res, err
	}
	defer pb.close()
	prefix := runID + "soak"
	burl := withPrefix(pb.url, prefix)

	nodes := make([]*node, 3)
	for i := range nodes {
		n, err := startNode(bin, fmt.Sprintf("soak-%s-node%d", cfg.Broker, i), burl, cfg.NodeArgs...)
		if err != nil {
			return res, err
		}
		nodes[i] = n
		defer func() {
			if !n.c.exited() {
				n.stop()
			}
		}()
	}
	backends := []string{nodes[0].addr, nodes[1].addr, nodes[2].addr}
	lbs := make([]*lbProc, cfg.LBs)
	for i := range lbs {
		l, err := startLB(fmt.Sprintf("lb%d", i), backends)
		if err != nil {
			return res, err
		}
		lbs[i] = l
		defer l.stop()
	}

	// Connect in steps, so that the listen backlogs do not overflow.
	var lat shardedHist
	var outageReconn, reopened atomic.Int64
	clients := make([]*soakClient, cfg.Clients)
	cs := make([]*sente.Client, cfg.Clients)
	defer func() { closeClients(cs[:countNonNil(cs)], 60*time.Second) }()
	const step = 500
	for i := 0; i < cfg.Clients; i += step {
		for j := i; j < min(i+step, cfg.Clients); j++ {
			clients[j] = newSoakClient(lbs[j%len(lbs)].url(), j, cfg, &lat, &outageReconn, &reopened)
			cs[j] = clients[j].c
		}
		if err := waitOpen(ctx, cs[i:min(i+step, cfg.Clients)], 60*time.Second); err != nil {
			return res, fmt.Errorf("connecting clients %d…: %w", i, err)
		}
	}
	res.ConnectSecs = time.Since(t0).Seconds()
	logf("  %d clients open in %.1fs (this process has %d descriptors open)", cfg.Clients, res.ConnectSecs, openFiles())
	tp := time.Now()
	if err := waitUsers(ctx, nodes[0], cfg.Clients, 60*time.Second); err != nil {
		return res, err
	}
	res.PresentSecs = time.Since(tp).Seconds()

	// The pushers: pusher k owns the users i with i%3 == k and pushes
	// round r's value to each of them in turn, in batches, through node k
	// (the next live node once node k is dead). So each user's values are
	// made by one goroutine, in order: what arrives must increase.
	var (
		alive    [3]atomic.Bool
		stop     = make(chan struct{})
		pwg      sync.WaitGroup
		acks     [3]ackLog
		counts   [3]struct{ attempted, acked, refused, failed int }
		lastAck  [3]atomic.Int64 // unix ns of the last acknowledged push
		firstErr [3]string
	)
	for k := range alive {
		alive[k].Store(true)
	}
	perPusher := float64(cfg.Rate) / 3
	procs := []soakProc{{"bench", os.Getpid()}, {"broker", pb.c.pid()}}
	for _, n := range nodes {
		procs = append(procs, soakProc{"nodes", n.c.pid()})
	}
	for _, l := range lbs {
		procs = append(procs, soakProc{"balancers", l.c.pid()})
	}
	book := newCPUBook(procs)
	pushStart := time.Now()
	res.PushStartSecs = pushStart.Sub(t0).Seconds()
	for k := range 3 {
		acks[k].acked = map[int][]int32{}
		acks[k].trail = map[int][]string{}
		var own []int
		for i := k; i < cfg.Clients; i += 3 {
			own = append(own, i)
		}
		pwg.Go(func() {
			sent := 0
			begin := time.Now()
			for r := 0; ; r++ {
				for b := 0; b < len(own); b += cfg.Batch {
					// Pace: the batch starting push number sent is due
					// at begin + sent/perPusher. Far behind (a stall):
					// start counting again rather than burst.
					due := begin.Add(time.Duration(float64(sent) / perPusher * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-stop:
							return
						}
					} else if d < -time.Second {
						begin, sent = time.Now(), 0
					}
					select {
					case <-stop:
						return
					default:
					}
					batch := own[b:min(b+cfg.Batch, len(own))]
					to := make([]string, len(batch))
					for j, i := range batch {
						to[j] = fmt.Sprintf("u%d", i)
					}
					n := nodes[k]
					for j := 0; !alive[n2i(nodes, n)].Load() && j < 3; j++ {
						n = nodes[(k+j+1)%3]
					}
					pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
					status, err := n.push(pctx, "s/p", to, r, 1, len(to), true)
					cancel()
					sent += len(batch)
					counts[k].attempted += len(batch)
					outcome := "acknowledged"
					if err != nil {
						outcome = fmt.Sprintf("not acknowledged (%d)", status)
					}
					for _, i := range batch {
						if len(acks[k].trail[i]) < 100 {
							acks[k].trail[i] = append(acks[k].trail[i], fmt.Sprintf("%s push %d via %s: %s", since(time.Now()), r, n.name, outcome))
						}
					}
					switch {
					case err == nil:
						counts[k].acked += len(batch)
						for _, i := range batch {
							acks[k].acked[i] = append(acks[k].acked[i], int32(r))
						}
						lastAck[k].Store(time.Now().UnixNano())
					case status == 503:
						counts[k].refused += len(batch)
					default:
						counts[k].failed += len(batch)
						if firstErr[k] == "" {
							firstErr[k] = err.Error()
						}
					}
					if ctx.Err() != nil {
						return
					}
				}
			}
		})
	}
	stopPushers := sync.OnceFunc(func() { close(stop); pwg.Wait() })
	defer stopPushers()

	// The schedule: a node killed at a third of the duration; the broker
	// killed and started again at two thirds, or once every client is back
	// if that is later (the two faults do not overlap unless clients stay
	// away until outage+10 s before the end).
	third := cfg.Duration / 3
	if err := sleepCtx(ctx, third); err != nil {
		return res, err
	}
	victim := 2
	res.KilledClients = clientsOn(nodes[victim])
	alive[victim].Store(false)
	base := reopened.Load()
	tk := time.Now()
	res.KillAtSecs = tk.Sub(t0).Seconds()
	book.remove(nodes[victim].c.pid())
	nodes[victim].kill()
	logf("  %.0fs: killed %s (SIGKILL), which had about %d clients", time.Since(pushStart).Seconds(), nodes[victim].name, res.KilledClients)
	// Every client open again?
	latest := pushStart.Add(cfg.Duration - cfg.Outage - 10*time.Second)
	marks := []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second}
	nextLog := 2 * time.Second
	for {
		open := openCount(cs)
		since := time.Since(tk)
		for len(marks) > 0 && since >= marks[0] {
			res.BackAfter = append(res.BackAfter, backMark{After: marks[0].Seconds(), Back: int(reopened.Load() - base)})
			marks = marks[1:]
		}
		if open == cfg.Clients && reopened.Load()-base >= int64(res.KilledClients) {
			res.KillBackSecs = since.Seconds()
			logf("  every client open again %.1fs after the kill", res.KillBackSecs)
			break
		}
		if since >= nextLog {
			logf("  %.0fs after the kill: %d clients reconnected, %d of %d open", since.Seconds(), reopened.Load()-base, open, cfg.Clients)
			nextLog += 2 * time.Second
		}
		if time.Now().After(latest) {
			msg := fmt.Sprintf("%d of %d clients open %.0fs after the kill", open, cfg.Clients, since.Seconds())
			logf("  %s", msg)
			res.Errors = append(res.Errors, msg)
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	if err := sleepCtx(ctx, time.Until(pushStart.Add(2*third))); err != nil {
		return res, err
	}
	outageReconn.Store(1) // from now on, count reconnects (1 is the start)
	tb := time.Now()
	res.BrokerKillAtSecs = tb.Sub(t0).Seconds()
	book.remove(pb.c.pid())
	pb.kill()
	logf("  %.0fs: killed %s-server (SIGKILL)", time.Since(pushStart).Seconds(), cfg.Broker)
	if err := sleepCtx(ctx, cfg.Outage); err != nil {
		return res, err
	}
	if err := pb.start(); err != nil {
		return res, fmt.Errorf("restarting the broker: %w", err)
	}
	book.add(soakProc{"broker", pb.c.pid()})
	tr := time.Now()
	res.OutageSecs = tr.Sub(tb).Seconds()
	logf("  %.0fs: %s-server started again on the same port after %.1fs", time.Since(pushStart).Seconds(), cfg.Broker, res.OutageSecs)
	for time.Until(pushStart.Add(cfg.Duration)) > 0 {
		acked := false
		for k := range lastAck {
			acked = acked || lastAck[k].Load() > tr.UnixNano()
		}
		if acked {
			res.AckAgainSecs = time.Since(tr).Seconds()
			logf("  pushes acknowledged again %.1fs after the restart", res.AckAgainSecs)
			break
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return res, err
		}
	}
	if res.AckAgainSecs == 0 {
		res.Errors = append(res.Errors, "no push acknowledged after the broker restart before the end")
	}
	if err := sleepCtx(ctx, time.Until(pushStart.Add(cfg.Duration))); err != nil {
		return res, err
	}
	stopPushers()
	res.CPU = book.cores()
	res.ReconnOutage = int(outageReconn.Load() - 1)
	for k := range counts {
		res.Attempted += counts[k].attempted
		res.Acked += counts[k].acked
		res.Refused503 += counts[k].refused
		res.Failed += counts[k].failed
		if firstErr[k] != "" {
			logf("  pusher %d: first failure: %s", k, firstErr[k])
		}
	}
	logf("  pushes stopped after %.0fs: %d asked, %d acknowledged, %d refused (503), %d failed",
		time.Since(pushStart).Seconds(), res.Attempted, res.Acked, res.Refused503, res.Failed)

	// Drain: wait until every acknowledged push has arrived, or nothing
	// more arrives for 30 s (2 minutes at most).
	acked := make([][]int32, cfg.Clients)
	for k := range acks {
		for i, vs := range acks[k].acked {
			acked[i] = vs
		}
	}
	td := time.Now()
	missing := func() int {
		m := 0
		for i, sc := range clients {
			sc.mu.Lock()
			m += len(tally(acked[i], sc.got).lost)
			sc.mu.Unlock()
		}
		return m
	}
	last, lastChange := missing(), time.Now()
	for last > 0 && time.Since(lastChange) < 30*time.Second && time.Since(td) < 2*time.Minute {
		if err := sleepCtx(ctx, time.Second); err != nil {
			return res, err
		}
		if m := missing(); m != last {
			last, lastChange = m, time.Now()
		}
	}
	sleepCtx(ctx, time.Second) // duplicates, if any, after the last
	res.DrainSecs = time.Since(td).Seconds()

	live := nodes[0]
	if err := waitUsers(ctx, live, cfg.Clients, 30*time.Second); err != nil {
		res.Errors = append(res.Errors, "presence at the end: "+err.Error())
	}
	if u, err := live.users(ctx); err == nil {
		res.UsersAtEnd = len(u)
		listed := map[string]bool{}
		for _, x := range u {
			listed[x] = true
		}
		for i := range cfg.Clients {
			uid := fmt.Sprintf("u%d", i)
			if listed[uid] {
				continue
			}
			res.MissingUsers = append(res.MissingUsers, uid)
			if len(res.MissingUsers) > 5 {
				continue
			}
			st := clients[i].c.State()
			clients[i].mu.Lock()
			logf("  %s is not listed though its client is open=%v (opens %d, told Lost %v); presence events (s since the soak began; node killed at %.1f s, broker at %.1f s):",
				uid, st.Open, clients[i].opens, clients[i].told, res.KillAtSecs, res.BrokerKillAtSecs)
			clients[i].mu.Unlock()
			for _, n := range nodes {
				for _, e := range n.history(uid) {
					logf("    %s: %s", n.name, e)
					res.MissingDetail = append(res.MissingDetail, n.name+": "+uid+" "+e)
				}
			}
		}
	}
	for i, n := range nodes {
		if i != victim {
			res.UserCloses += n.event("chsk/uidport-close")
		}
		// Presence changes by phase: after the node kill, after the
		// broker kill.
		n.mu.Lock()
		for _, evs := range n.byUser {
			for _, e := range evs {
				f := strings.Fields(e)
				if len(f) < 2 {
					continue
				}
				at := secsOf(e)
				phase := 0
				switch {
				case at >= res.BrokerKillAtSecs:
					phase = 2
				case at >= res.KillAtSecs:
					phase = 1
				}
				switch f[1] {
				case "uidport-open":
					res.UserOpensByPhase[phase]++
				case "uidport-close":
					res.UserClosesByPhase[phase]++
				}
			}
		}
		n.mu.Unlock()
	}

	for i, sc := range clients {
		st := sc.c.State()
		if st.Lost {
			res.ToldLostAtEnd++
		}
		if !st.Open {
			res.NotOpenAtEnd++
		}
		sc.mu.Lock()
		t := tally(acked[i], sc.got)
		res.Received += len(sc.got)
		res.Lost += len(t.lost)
		if !sc.told {
			res.LostSilent += len(t.lost)
		}
		res.Duplicated += t.dups
		res.DupUnacked += t.dupUnacked
		res.OutOfOrder += t.disorder
		res.UnackedRecvd += t.unacked
		uid := fmt.Sprintf("u%d", i)
		timeline := func() string {
			var lines []string
			lines = append(lines, sc.trail...)
			for _, e := range acks[i%3].trail[i] {
				lines = append(lines, e)
			}
			for _, n := range nodes {
				for _, e := range n.history(uid) {
					at, rest, _ := strings.Cut(e, " ")
					lines = append(lines, at+" "+n.name+": "+rest)
				}
			}
			sort.SliceStable(lines, func(a, b int) bool { return secsOf(lines[a]) < secsOf(lines[b]) })
			return fmt.Sprintf("its timeline (s since the soak began; pushes from %.1f s, node killed at %.1f s, broker at %.1f s):\n  %s",
				res.PushStartSecs, res.KillAtSecs, res.BrokerKillAtSecs, strings.Join(lines, "\n  "))
		}
		if len(t.lost) > 0 {
			res.LostUsers++
			if !sc.told && len(res.SilentDetail) < 3 {
				logf("  %s (never told Lost): acknowledged but never received %v (received %v)", uid, clip(t.lost), clip(sc.got))
				detail := fmt.Sprintf("%s: acknowledged, never received %v; received %v; %s", uid, clip(t.lost), clip(sc.got), timeline())
				res.SilentDetail = append(res.SilentDetail, detail)
				logf("  %s", detail)
			}
		}
		if (t.dups > 0 || t.disorder > 0) && len(res.OrderDetail) < 3 {
			detail := fmt.Sprintf("%s: %d duplicated, %d out of order; received %v; %s", uid, t.dups, t.disorder, clip(sc.got), timeline())
			res.OrderDetail = append(res.OrderDetail, detail)
			logf("  %s", detail)
		}
		if sc.told {
			res.ToldLost++
		}
		res.Reconnects += max(sc.opens-1, 0)
		sc.mu.Unlock()
	}
	h := lat.merged()
	res.P50ms, res.P99ms, res.Maxms = h.Quantile(0.5)/1e6, h.Quantile(0.99)/1e6, h.Quantile(1)/1e6
	for i, n := range nodes {
		n.mu.Lock()
		res.NodeLogs += n.warnings
		if res.NodeLogKinds == nil {
			res.NodeLogKinds = map[string]int{}
		}
		for k, v := range n.kinds {
			res.NodeLogKinds[k] += v
			if res.NodeLogExample == nil {
				res.NodeLogExample = map[string]string{}
			}
			if _, ok := res.NodeLogExample[k]; !ok {
				res.NodeLogExample[k] = n.example[k]
			}
		}
		for _, l := range n.firstLog {
			if len(res.NodeLogSamples) < 6 {
				res.NodeLogSamples = append(res.NodeLogSamples, fmt.Sprintf("node%d: %s", i, l))
			}
		}
		n.mu.Unlock()
	}
	if res.LostSilent > 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("%d acknowledged pushes never received, their clients never told Lost", res.LostSilent))
	}
	if res.Duplicated > 0 || res.OutOfOrder > 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("%d acknowledged pushes received twice, %d out of order", res.Duplicated, res.OutOfOrder))
	}
	logf("  received %d; lost %d (of %d users), duplicated %d (and %d of refused pushes), out of order %d, unacknowledged but received %d; told Lost %d (at the end %d); reconnects %d; latency p50 %.1f ms p99 %.1f ms max %.0f ms",
		res.Received, res.Lost, res.LostUsers, res.Duplicated, res.DupUnacked, res.OutOfOrder, res.UnackedRecvd, res.ToldLost, res.ToldLostAtEnd, res.Reconnects, res.P50ms, res.P99ms, res.Maxms)
	return res, nil
}

func n2i(nodes []*node, n *node) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}

func countNonNil(cs []*sente.Client) int {
	for i, c := range cs {
		if c == nil {
			return i
		}
	}
	return len(cs)
}

func openCount(cs []*sente.Client) int {
	n := 0
	for _, c := range cs {
		if c.State().Open {
			n++
		}
	}
	return n
}

// clientsOn is how many clients the node reported connecting, less those it
// reported gone (its own presence events).
func clientsOn(n *node) int {
	return n.event("chsk/client-connect") - n.event("chsk/client-disconnect")
}

func waitUsers(ctx context.Context, n *node, want int, d time.Duration) error {
	deadline := time.Now().Add(d)
	var (
		got int
		err error
	)
	for {
		var u []string
		u, err = n.users(ctx)
		got = len(u)
		if err == nil && got == want {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("users not listed within %v: %w", d, err)
			}
			return fmt.Errorf("%s lists %d users, want %d, after %v", n.name, got, want, d)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

type tallied struct {
	lost       []int32
	dups       int // of acknowledged pushes
	dupUnacked int // of pushes whose /push was refused
	disorder   int
	unacked    int
}

// tally compares what a user's client received with what was acknowledged
// for it (both made of increasing values).
func tally(acked, got []int32) tallied {
	var t tallied
	ack := map[int32]bool{}
	for _, v := range acked {
		ack[v] = true
	}
	seen := map[int32]int{}
	var top int32 = -1
	for _, v := range got {
		seen[v]++
		if seen[v] > 1 {
			if ack[v] {
				t.dups++
			} else {
				t.dupUnacked++
			}
			continue
		}
		if v < top {
			t.disorder++
		}
		top = max(top, v)
	}
	for _, v := range acked {
		if seen[v] == 0 {
			t.lost = append(t.lost, v)
		}
	}
	for v := range seen {
		if !ack[v] {
			t.unacked++
		}
	}
	return t
}

// secsOf reads the leading "12.345s" of a trail line.
func secsOf(l string) float64 {
	var v float64
	fmt.Sscanf(strings.TrimSuffix(strings.Fields(l)[0], "s"), "%g", &v)
	return v
}

func clip(vs []int32) string {
	if len(vs) <= 12 {
		return fmt.Sprint(vs)
	}
	return fmt.Sprint(vs[:6]) + "…" + fmt.Sprint(vs[len(vs)-6:])
}
