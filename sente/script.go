package sente

import (
	_ "embed"
	"net/http"
	"strings"
)

// ClientJS is the browser client, an ES module with no dependencies
// (client.js beside this file); ClientTypes is its TypeScript declaration.
var (
	//go:embed client.js
	ClientJS []byte
	//go:embed client.d.ts
	ClientTypes []byte
)

// serveScript answers GET <path>/client.js and <path>/client.d.ts; it reports
// whether the request was one of those.
func serveScript(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	var body []byte
	switch {
	case strings.HasSuffix(r.URL.Path, "/client.js"):
		body = ClientJS
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(r.URL.Path, "/client.d.ts"):
		body = ClientTypes
		w.Header().Set("Content-Type", "application/typescript; charset=utf-8")
	default:
		return false
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(body)
	return true
}
