package wsasync

import (
	"testing"
	"unsafe"
)

func TestPayloadClasses(t *testing.T) {
	for i := 1; i < len(payloadClasses); i++ {
		if payloadClasses[i] <= payloadClasses[i-1] {
			t.Fatalf("classes not increasing at %d: %d after %d", i, payloadClasses[i], payloadClasses[i-1])
		}
	}
	if int(payloadClasses[len(payloadClasses)-1]) != maxPooledPayload {
		t.Fatalf("largest class %d, want %d", payloadClasses[len(payloadClasses)-1], maxPooledPayload)
	}
	for n := 1; n <= maxPooledPayload; n++ {
		k := classUp(n)
		if int(payloadClasses[k]) < n || (k > 0 && int(payloadClasses[k-1]) >= n) {
			t.Fatalf("classUp(%d) = class %d (%d bytes)", n, k, payloadClasses[k])
		}
	}
}

// TestPayloadReuse gives back buffers of every capacity, odd ones included,
// and checks that what payload hands out always has room for what was asked
// and is never one buffer handed out twice.
func TestPayloadReuse(t *testing.T) {
	sizes := []int{0, 1, 7, 8, 9, 63, 64, 65, 4000, 4096, 4097, 32767, 32768, 32769, 100 << 10}
	for _, c := range sizes {
		release(make([]byte, 0, c))
		release(make([]byte, c)[:c/2])
	}
	seen := map[*byte]bool{}
	var held [][]byte
	for round := 0; round < 3; round++ {
		for _, n := range sizes {
			p := payload(n)
			if len(p) != 0 || cap(p) < n {
				t.Fatalf("payload(%d): len %d cap %d", n, len(p), cap(p))
			}
			if cap(p) == 0 {
				continue
			}
			first := &p[:1][0]
			if seen[first] {
				t.Fatalf("payload(%d) handed out a buffer that is still held", n)
			}
			seen[first] = true
			held = append(held, p)
		}
	}
	for _, p := range held {
		release(p)
	}
}

// TestMessageSize guards the size of what every send on in and out copies:
// the recycle mark sits in Type's padding.
func TestMessageSize(t *testing.T) {
	want := unsafe.Sizeof(struct {
		Type MessageType
		Data []byte
	}{})
	if n := unsafe.Sizeof(Message{}); n != want {
		t.Fatalf("Message is %d bytes, want %d", n, want)
	}
}
