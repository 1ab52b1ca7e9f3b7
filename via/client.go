package via

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"path"
	"strings"
	"time"
)

// The browser client (an ES module) and its TypeScript declarations,
// served by ServeHTTP under the endpoint's route.
var (
	//go:embed via.js
	clientJS []byte
	//go:embed via.d.ts
	clientDTS []byte
)

type clientFile struct {
	data  []byte
	ctype string
	etag  string
}

var clientFiles = map[string]clientFile{
	"via.js":   newClientFile(clientJS, "text/javascript; charset=utf-8"),
	"via.d.ts": newClientFile(clientDTS, "text/plain; charset=utf-8"),
}

func newClientFile(data []byte, ctype string) clientFile {
	sum := sha256.Sum256(data)
	return clientFile{data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// ClientJS returns the browser client, via.js, as ServeHTTP serves it.
func ClientJS() []byte { return bytes.Clone(clientJS) }

// serveClient serves via.js or via.d.ts for a GET that is not a WebSocket
// upgrade and whose path ends in one of those names; false otherwise.
func serveClient(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	f, ok := clientFiles[path.Base(r.URL.Path)]
	if !ok {
		return false
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Cache-Control", "no-cache") // revalidate: cheap with the ETag
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
	return true
}
