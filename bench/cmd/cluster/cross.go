package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsasync/wsasync/bench/internal/measure"
	"github.com/wsasync/wsasync/sente"
)

// ---- part 1: cross-node push throughput and latency ----

type crossConfig struct {
	Users      int           `json:"users"`
	K          int           `json:"pushes_per_user_per_node"`
	Par        int           `json:"par"`
	Rounds     int           `json:"rounds"`
	Configs    []string      `json:"configs"`
	Redis      string        `json:"redis"`
	NATS       string        `json:"nats"`
	QuietWait  time.Duration `json:"quiet_wait"`
	MaxForeign float64       `json:"max_foreign"`
	Retries    int           `json:"retries"`
	Budget     time.Duration `json:"budget"`
	MinWindow  time.Duration `json:"min_window"`
}

// crossRun is one measurement of one configuration.
type crossRun struct {
	Config     string  `json:"config"`
	Round      int     `json:"round"`
	Nodes      int     `json:"nodes"`
	Pushes     int     `json:"pushes"`    // deliveries expected = made
	Reps       int     `json:"reps"`      // repetitions of the push phase
	Seconds    float64 `json:"seconds"`   // start of pushing → every client has everything, summed over the repetitions
	PushSecs   float64 `json:"push_secs"` // start of pushing → every /push answered, summed
	Rate       float64 `json:"rate"`      // deliveries per second
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Maxms      float64 `json:"max_ms"`
	Foreign    float64 `json:"foreign"`    // cores used by other processes meanwhile
	CPUBench   float64 `json:"cpu_bench"`  // cores used by this process (the clients)
	CPUNodes   float64 `json:"cpu_nodes"`  // by the nodes
	CPUBroker  float64 `json:"cpu_broker"` // by the broker server(s)
	Tries      int     `json:"tries"`
	Bad        int     `json:"bad"`        // pushes missing, doubled or out of order (must be 0)
	Reconnects int     `json:"reconnects"` // client reconnects during the run (must be 0)
	NodeLogs   int     `json:"node_logs"`  // warnings the nodes logged
	TooSlow    int     `json:"too_slow"`   // clients the nodes dropped as too slow
}

type crossResult struct {
	Config  crossConfig `json:"config"`
	Runs    []crossRun  `json:"runs"`
	Retried int         `json:"retried"`
	Errors  []string    `json:"errors,omitempty"`
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// crossClient is the Go client of one user: it checks that every stream
// (one per pushing node) arrives in order, once, and notes the latency of
// each push.
type crossClient struct {
	c       *sente.Client
	streams int
	k       int
	h       measure.Hist
	next    []int // per stream: the next value expected
	bad     int
	opens   int
	done    chan struct{}
}

// crossShared is what all clients of a measurement update.
type crossShared struct {
	got    atomic.Int64 // deliveries counted so far
	target atomic.Pointer[goal]
	warm   atomic.Int64
}

// goal is the count of deliveries that completes one repetition.
type goal struct {
	total int64
	last  atomic.Int64 // unix ns of the delivery that reached total
	all   chan struct{}
}

func newCrossClient(wsURL, uid string, streams, k int, sh *crossShared) *crossClient {
	cc := &crossClient{streams: streams, k: k, next: make([]int, streams), done: make(chan struct{})}
	cc.c = sente.NewClient(wsURL, sente.ClientOptions{
		ClientID: "c" + uid,
		Params:   url.Values{"u": {uid}},
		Logger:   discard,
	})
	go func() {
		defer close(cc.done)
		states := cc.c.StateChanges()
		for {
			select {
			case ev, ok := <-cc.c.Events():
				if !ok {
					return
				}
				cc.event(ev, sh)
			case st, ok := <-states:
				if !ok {
					states = nil
					continue
				}
				if st.Open {
					cc.opens++
				}
			}
		}
	}()
	return cc
}

func (cc *crossClient) event(ev *sente.Event, sh *crossShared) {
	now := time.Now().UnixNano()
	if ev.ID == "w/x" {
		sh.warm.Add(1)
		return
	}
	s, ok := strings.CutPrefix(ev.ID, "b/n")
	if !ok {
		return
	}
	var v [2]int64
	if ev.Decode(&v) != nil {
		cc.bad++
		return
	}
	var k int
	fmt.Sscan(s, &k)
	if k < 0 || k >= cc.streams || v[0] != int64(cc.next[k]) {
		cc.bad++
	} else {
		cc.next[k]++
	}
	cc.h.Add(now - v[1])
	if g := sh.target.Load(); sh.got.Add(1) == g.total {
		g.last.Store(now)
		close(g.all)
	}
}

// waitOpen waits until every client is open, up to d.
func waitOpen(ctx context.Context, cs []*sente.Client, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		n := 0
		for _, c := range cs {
			if c.State().Open {
				n++
			}
		}
		if n == len(cs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d clients open after %v", n, len(cs), d)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeClients closes clients concurrently, waiting at most d.
func closeClients(cs []*sente.Client, d time.Duration) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c.Close()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		logf("warning: clients still closing after %v; going on", d)
	}
}

func withPrefix(base, prefix string) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "prefix=" + prefix
}

func runCross(ctx context.Context, bin string, cfg crossConfig, runID string) *crossResult {
	res := &crossResult{Config: cfg}
	n := len(cfg.Configs)
	budget := measure.NewBudget(cfg.Budget, cfg.Rounds*n)
	for r := 0; r < cfg.Rounds; r++ {
		for i := 0; i < n; i++ {
			name := cfg.Configs[(i+r)%n] // rotate who goes first
			var (
				best crossRun
				err  error
			)
			for try := 0; try <= cfg.Retries; try++ {
				budget.Quiet(cfg.QuietWait, cfg.MaxForeign)
				logf("cross round %d/%d %-6s (try %d)", r+1, cfg.Rounds, name, try+1)
				var (
					m    crossRun
					err1 error
				)
				budget.Time(func() {
					m, err1 = crossOnce(ctx, bin, cfg, name, r, fmt.Sprintf("%sx%s%dt%d", runID, name[:1], r, try))
				})
				if ctx.Err() != nil {
					res.Errors = append(res.Errors, fmt.Sprintf("round %d %s: interrupted", r+1, name))
					return res
				}
				if err1 != nil {
					logf("  FAILED: %v", err1)
					if best.Tries == 0 {
						err = err1
					}
				} else {
					m.Tries = try + 1
					logf("  %.0f pushes/s: %d × %d in %.2fs (answered in %.2fs), p50 %.1f ms, p99 %.1f ms, max %.1f ms; cores: bench %.2f, nodes %.2f, broker %.2f, other processes %.2f; bad %d, reconnects %d, node logs %d",
						m.Rate, m.Reps, m.Pushes/max(m.Reps, 1), m.Seconds, m.PushSecs, m.P50ms, m.P99ms, m.Maxms, m.CPUBench, m.CPUNodes, m.CPUBroker, m.Foreign, m.Bad, m.Reconnects, m.NodeLogs)
					if best.Tries == 0 || m.Foreign < best.Foreign {
						best, err = m, nil
					}
					if m.Foreign <= cfg.MaxForeign {
						break
					}
				}
				if try == cfg.Retries || !budget.Spare() {
					break
				}
				if err1 == nil {
					logf("  other processes used %.2f cores: again", m.Foreign)
				}
				res.Retried++
			}
			budget.Done()
			if best.Tries == 0 {
				res.Errors = append(res.Errors, fmt.Sprintf("round %d %s: %v", r+1, name, err))
				continue
			}
			res.Runs = append(res.Runs, best)
		}
	}
	return res
}

// crossOnce measures one configuration: start its nodes, connect the
// clients, push from every node to every user, wait for every client to
// have everything, tear down.
func crossOnce(ctx context.Context, bin string, cfg crossConfig, name string, round int, prefix string) (m crossRun, err error) {
	m = crossRun{Config: name, Round: round + 1}
	var burl string
	nNodes := 3
	var brokerPIDs []string
	switch name {
	case "memory":
		nNodes = 1
	case "redis":
		burl = withPrefix(cfg.Redis, prefix)
		brokerPIDs = brokerPID(cfg.Redis)
	case "nats":
		burl = withPrefix(cfg.NATS, prefix)
		brokerPIDs = brokerPID(cfg.NATS)
	default:
		return m, fmt.Errorf("unknown configuration %q", name)
	}
	m.Nodes = nNodes
	defer func() {
		if burl != "" {
			if cerr := cleanBroker(name, burl, prefix); cerr != nil {
				logf("  warning: cleaning prefix %s: %v", prefix, cerr)
				if err == nil {
					err = cerr
				}
			}
		}
	}()

	nodes := make([]*node, nNodes)
	var startErr error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range nodes {
		wg.Go(func() {
			n, err := startNode(bin, fmt.Sprintf("%s-node%d", name, i), burl)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				startErr = errors.Join(startErr, err)
				return
			}
			nodes[i] = n
		})
	}
	wg.Wait()
	defer func() {
		for _, n := range nodes {
			if n != nil {
				wg.Go(n.stop)
			}
		}
		wg.Wait()
	}()
	if startErr != nil {
		return m, startErr
	}

	sh := &crossShared{}
	const streams = 3 // three pushers: one per node, or three on the one node
	perRep := int64(streams * cfg.Users * cfg.K)
	sh.target.Store(&goal{total: perRep, all: make(chan struct{})})
	ccs := make([]*crossClient, cfg.Users)
	cs := make([]*sente.Client, cfg.Users)
	users := make([]string, cfg.Users)
	for i := range ccs {
		users[i] = fmt.Sprintf("u%d", i)
		ccs[i] = newCrossClient(nodes[i%nNodes].url(), users[i], streams, cfg.K, sh)
		cs[i] = ccs[i].c
	}
	defer closeClients(cs, 30*time.Second)
	if err := waitOpen(ctx, cs, 60*time.Second); err != nil {
		return m, err
	}

	pusher := func(k int) *node { return nodes[k%nNodes] }
	// Warm-up: one push from each pusher to every user, so that every
	// connection (to the broker too) is made and every path run once.
	var perr error
	for k := range streams {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if _, err := pusher(k).push(pctx, "w/x", users, 0, 1, cfg.Par, false); err != nil {
				mu.Lock()
				perr = errors.Join(perr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if perr != nil {
		return m, fmt.Errorf("warm-up: %w", perr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sh.warm.Load() < int64(streams*cfg.Users) {
		if time.Now().After(deadline) {
			return m, fmt.Errorf("warm-up: %d of %d pushes arrived within 30 s", sh.warm.Load(), streams*cfg.Users)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return m, err
		}
	}
	// The push phase, repeated (the integers going on) until the
	// measured time adds up to MinWindow: a fast configuration would
	// otherwise be timed over a fraction of a second.
	book := newCPUBook(groups(brokerPIDs, nodes))
	reps := 0
	for reps == 0 || (m.Seconds < cfg.MinWindow.Seconds() && reps < 100) {
		g := &goal{total: perRep * int64(reps+1), all: make(chan struct{})}
		sh.target.Store(g)
		start := time.Now()
		var pushDone atomic.Int64
		for k := range streams {
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
				defer cancel()
				_, err := pusher(k).push(pctx, fmt.Sprintf("b/n%d", k), users, reps*cfg.K, cfg.K, cfg.Par, true)
				if err != nil {
					mu.Lock()
					perr = errors.Join(perr, err)
					mu.Unlock()
				}
				t := time.Now().UnixNano()
				for {
					old := pushDone.Load()
					if t <= old || pushDone.CompareAndSwap(old, t) {
						break
					}
				}
			})
		}
		wg.Wait()
		if perr != nil {
			return m, fmt.Errorf("pushing: %w", perr)
		}
		limit := max(60*time.Second, 10*time.Since(start))
		select {
		case <-g.all:
		case <-time.After(limit):
			return m, fmt.Errorf("%d of %d pushes delivered %v after the start; %s", sh.got.Load(), g.total, limit.Round(time.Second), missingReport(ccs, nodes, (reps+1)*cfg.K))
		case <-ctx.Done():
			return m, ctx.Err()
		}
		m.Seconds += time.Unix(0, g.last.Load()).Sub(start).Seconds()
		m.PushSecs += time.Unix(0, pushDone.Load()).Sub(start).Seconds()
		reps++
	}
	cores := book.cores()
	m.CPUBench, m.CPUNodes, m.CPUBroker = cores["bench"], cores["nodes"], cores["broker"]
	m.Foreign = cores["other processes"]
	m.Reps = reps
	m.Pushes = int(perRep) * reps
	m.Rate = float64(m.Pushes) / m.Seconds

	// A moment for anything extra (a duplicate) to arrive, then tally.
	sleepCtx(ctx, 200*time.Millisecond)
	closeClients(cs, 30*time.Second)
	var h measure.Hist
	for _, cc := range ccs {
		<-cc.done
		h.Merge(&cc.h)
		m.Bad += cc.bad
		for _, nx := range cc.next {
			m.Bad += reps*cfg.K - nx // missing
		}
		m.Reconnects += max(cc.opens-1, 0)
	}
	m.P50ms = h.Quantile(0.5) / 1e6
	m.P99ms = h.Quantile(0.99) / 1e6
	m.Maxms = h.Quantile(1) / 1e6
	for _, n := range nodes {
		n.mu.Lock()
		m.NodeLogs += n.warnings
		m.TooSlow += n.tooSlow
		if n.warnings > 0 {
			logf("  %s logged %d lines, first: %q", n.name, n.warnings, n.firstLog)
		}
		n.mu.Unlock()
	}
	if m.Bad > 0 {
		return m, fmt.Errorf("%d pushes missing, doubled or out of order (of %d)", m.Bad, m.Pushes)
	}
	return m, nil
}

// missingReport says which deliveries are missing: per pushing node
// (stream) and per node of the receiving client, and what the nodes logged.
// The clients' counters are read without their goroutines' lock: a
// snapshot for diagnosis, after deliveries have stopped.
func missingReport(ccs []*crossClient, nodes []*node, want int) string {
	miss := map[string]int{}
	clients := map[string]int{}
	var first []string
	for i, cc := range ccs {
		short := false
		for k, nx := range cc.next {
			if d := want - nx; d > 0 {
				key := fmt.Sprintf("from pusher %d to clients on node%d", k, i%len(nodes))
				miss[key] += d
				short = true
				if len(first) < 5 {
					first = append(first, fmt.Sprintf("u%d (node%d) has %d of pusher %d's %d", i, i%len(nodes), nx, k, want))
				}
			}
		}
		if short {
			clients[fmt.Sprintf("node%d", i%len(nodes))]++
		}
	}
	keys := make([]string, 0, len(miss))
	for k := range miss {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", miss[k], k))
	}
	var logs []string
	for _, n := range nodes {
		n.mu.Lock()
		for k, c := range n.kinds {
			logs = append(logs, fmt.Sprintf("%s: %d× %s (first: %s)", n.name, c, k, n.example[k]))
		}
		n.mu.Unlock()
	}
	return fmt.Sprintf("missing: %s; clients short by node: %v; e.g. %s; node logs: %v", strings.Join(parts, ", "), clients, strings.Join(first, "; "), logs)
}

func brokerPID(brokerURL string) []string {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return nil
	}
	if pid := listenerPID(u.Host); pid != "" {
		return []string{pid}
	}
	return nil
}

func groups(brokerPIDs []string, nodes []*node) []soakProc {
	procs := []soakProc{{"bench", os.Getpid()}}
	for _, p := range brokerPIDs {
		var pid int
		fmt.Sscan(p, &pid)
		procs = append(procs, soakProc{"broker", pid})
	}
	for _, n := range nodes {
		procs = append(procs, soakProc{"nodes", n.c.pid()})
	}
	return procs
}

// crossSummary is the medians and ranges of one configuration.
type crossSummary struct {
	Config                   string
	N                        int
	Rate, P50, P99, Secs     [3]float64 // median, min, max
	CPUBench, CPUNodes       float64    // medians
	CPUBroker                float64
	Foreign                  float64 // max over the runs
	Bad, Reconnects, TooSlow int
}

func summarize(runs []crossRun, name string) (s crossSummary, ok bool) {
	s.Config = name
	var rate, p50, p99, secs, cb, cn, cr []float64
	for _, r := range runs {
		if r.Config != name {
			continue
		}
		rate = append(rate, r.Rate)
		p50 = append(p50, r.P50ms)
		p99 = append(p99, r.P99ms)
		secs = append(secs, r.Seconds)
		cb, cn, cr = append(cb, r.CPUBench), append(cn, r.CPUNodes), append(cr, r.CPUBroker)
		s.Foreign = max(s.Foreign, r.Foreign)
		s.Bad += r.Bad
		s.Reconnects += r.Reconnects
		s.TooSlow += r.TooSlow
	}
	s.N = len(rate)
	if s.N == 0 {
		return s, false
	}
	s.Rate, s.P50, s.P99, s.Secs = mmm(rate), mmm(p50), mmm(p99), mmm(secs)
	s.CPUBench, s.CPUNodes, s.CPUBroker = mmm(cb)[0], mmm(cn)[0], mmm(cr)[0]
	return s, true
}

func mmm(vs []float64) [3]float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return [3]float64{med, s[0], s[n-1]}
}
