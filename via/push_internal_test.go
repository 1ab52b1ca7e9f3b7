package via

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// For random pairs of JSON values, what the publisher sends (pushBody)
// rebuilds the new value exactly from the old one on the subscriber's side.
func TestPushBodyRebuildsTheValue(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	keys := []string{"a", "b", "", "~1", "/x", "é", "\u2028", `"q"`, "null", "__proto__"}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch k := r.IntN(9); {
		case k == 0:
			return nil
		case k == 1:
			return r.IntN(2) == 0
		case k == 2:
			return r.NormFloat64() * 1e6
		case k == 3:
			return float64(r.Int64N(1<<53) - 1<<52)
		case k == 4:
			return keys[r.IntN(len(keys))]
		case k == 5 && depth < 4:
			a := make([]any, r.IntN(4))
			for i := range a {
				a[i] = gen(depth + 1)
			}
			return a
		case depth < 4:
			m := map[string]any{}
			for range r.IntN(6) {
				m[keys[r.IntN(len(keys))]] = gen(depth + 1)
			}
			return m
		}
		return "leaf"
	}
	// mutate makes a value close to v, so that patches are worth it.
	var mutate func(v any, depth int) any
	mutate = func(v any, depth int) any {
		m, ok := v.(map[string]any)
		if !ok || r.IntN(8) == 0 {
			return gen(depth)
		}
		out := map[string]any{}
		for k, x := range m {
			switch r.IntN(5) {
			case 0: // dropped
			case 1:
				out[k] = mutate(x, depth+1)
			default:
				out[k] = x
			}
		}
		if r.IntN(2) == 0 {
			out[keys[r.IntN(len(keys))]] = gen(depth + 1)
		}
		return out
	}
	patches := 0
	prev := gen(0)
	for range 5000 {
		next := mutate(prev, 0)
		old, _ := json.Marshal(prev)
		nw, _ := json.Marshal(next)
		typ, body := pushBody(old, nw)
		rebuilt := nw
		switch {
		case body == nil:
			// Nothing to send: the values must be equal.
			if !jsonEqual(t, old, nw) {
				t.Fatalf("nothing sent for a change:\n%s\n%s", old, nw)
			}
			rebuilt = old
		case typ == typePatch:
			patches++
			d, err := jsonpatch.MergePatch(old, body)
			if err != nil {
				t.Fatalf("patch %s on %s: %v", body, old, err)
			}
			rebuilt = d
		default:
			rebuilt = body
		}
		if !jsonEqual(t, rebuilt, nw) {
			t.Fatalf("old  %s\nnew  %s\n%s %s\ngot  %s", old, nw, typ, body, rebuilt)
		}
		prev = next
	}
	if patches < 500 {
		t.Fatalf("only %d patches", patches)
	}
	t.Logf("%d patches", patches)
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
