package msgpack_test

import (
	"fmt"
	"net/http"

	"github.com/wsasync/wsasync/sente"
	"github.com/wsasync/wsasync/sente/msgpack"
)

// A client event with a callback id, packed as sente packs frames, and
// unpacked again.
func ExamplePacker() {
	var p msgpack.Packer
	id, _ := p.Marshal("chat/msg")
	data, _ := p.Marshal(struct {
		Text string `json:"text"`
	}{"hi"})
	cb, _ := p.Marshal("cb1")
	frame := p.AppendArray(nil, p.AppendArray(nil, id, data), cb)
	fmt.Printf("%s: % x\n", p.Name(), frame)

	envelope, err := p.SplitArray(frame) // [payload, cb]
	if err != nil {
		panic(err)
	}
	event, err := p.SplitArray(envelope[0]) // [id, data]
	if err != nil {
		panic(err)
	}
	var gotID, gotCB string
	var got map[string]string
	_ = p.Unmarshal(event[0], &gotID)
	_ = p.Unmarshal(event[1], &got)
	_ = p.Unmarshal(envelope[1], &gotCB)
	fmt.Println(gotID, got, gotCB)
	// Output:
	// msgpack: 92 92 a8 63 68 61 74 2f 6d 73 67 81 a4 74 65 78 74 a2 68 69 a3 63 62 31
	// chat/msg map[text:hi] cb1
}

// A server speaking subprotocol "sente.v1.msgpack".
func Example_server() {
	s := sente.NewServer(sente.Options{Packer: msgpack.Packer{}})
	http.Handle("/chsk", s)
}
