package wsasync

import (
	"sync"
	"unsafe"
)

// Payload buffers that handlers give back ([Message.Release],
// [Message.Recycled]) are kept by size class for later reads. The classes are
// the Go allocator's own small-object sizes, so a payload taken at its class
// size occupies no more memory than make([]byte, n) would. Payloads above the
// largest class are allocated and collected as usual.
var payloadClasses = [...]uint16{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

const maxPooledPayload = 32 << 10

// A pool holds the first byte of each buffer (an unsafe.Pointer fits in an
// interface without allocating); the class says its capacity.
var payloadPools [len(payloadClasses)]sync.Pool

// classUp is the smallest class that holds n bytes, 0 < n <= maxPooledPayload.
func classUp(n int) int {
	lo, hi := 0, len(payloadClasses)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(payloadClasses[m]) < n {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// payload returns an empty slice with room for n bytes, reused when one was
// released.
func payload(n int) []byte {
	if n <= 0 || n > maxPooledPayload {
		return make([]byte, 0, n)
	}
	k := classUp(n)
	size := int(payloadClasses[k])
	if p, _ := payloadPools[k].Get().(unsafe.Pointer); p != nil {
		return unsafe.Slice((*byte)(p), size)[:0]
	}
	return make([]byte, 0, size)
}

// release keeps b for a later payload. It goes to the largest class its
// capacity covers.
func release(b []byte) {
	c := cap(b)
	if c < int(payloadClasses[0]) {
		return
	}
	if c > maxPooledPayload {
		return // left to the collector: it would hold more memory than it serves
	}
	k := len(payloadClasses) - 1
	if c < maxPooledPayload {
		k = classUp(c+1) - 1 // the largest class <= c
	}
	payloadPools[k].Put(unsafe.Pointer(unsafe.SliceData(b[:1])))
}
