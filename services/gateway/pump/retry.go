package main

// Sending a read again when the engine failed it for a moment: the same decision as the Python
// gateway's (services/gateway/retries.py), whose error types and pauses it is started with.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

const (
	checkedBytes = 1 << 20 // larger answers are passed on unread
	headBytes    = 512     // a search answer's `_shards` is in its first bytes
)

// partialHead: the Python gateway's retries.PARTIAL, `"_shards"\s*:\s*\{[^}]*"failed"\s*:\s*[1-9]`,
// scanned by hand (Go's regexp took a microsecond a search answer).
func partialHead(head []byte) bool {
	for rest := head; ; {
		at := bytes.Index(rest, []byte(`"_shards"`))
		if at < 0 {
			return false
		}
		rest = rest[at+1:] // the closing quote may open the next one
		if shards, ok := after(rest[len(`"_shards"`)-1:], ':'); ok {
			if shards, ok = after(shards, '{'); ok {
				if end := bytes.IndexByte(shards, '}'); end >= 0 {
					shards = shards[:end]
				}
				if failedShards(shards) {
					return true
				}
			}
		}
	}
}

// failedShards: `"failed"\s*:\s*[1-9]` anywhere in these bytes.
func failedShards(shards []byte) bool {
	for {
		at := bytes.Index(shards, []byte(`"failed"`))
		if at < 0 {
			return false
		}
		shards = shards[at+1:]
		if count, ok := after(shards[len(`"failed"`)-1:], ':'); ok {
			if count = bytes.TrimLeft(count, spaces); len(count) > 0 && count[0] >= '1' && count[0] <= '9' {
				return true
			}
		}
	}
}

const spaces = "\t\n\f\r " // regexp's \s

// after: the bytes past `mark`, if only spaces come before it.
func after(text []byte, mark byte) ([]byte, bool) {
	text = bytes.TrimLeft(text, spaces)
	if len(text) == 0 || text[0] != mark {
		return nil, false
	}
	return text[1:], true
}

// opensScroll: a search that opens a scroll context is not sent again (retries.SCROLL, `(?:^|&)scroll=`).
func opensScroll(query string) bool {
	return strings.HasPrefix(query, "scroll=") || strings.Contains(query, "&scroll=")
}

type Retry struct {
	errors map[string]bool
	pauses []time.Duration
}

// NewRetry from the flags' comma lists; a malformed pause is an error.
func NewRetry(errors, pauses string) (*Retry, error) {
	r := &Retry{errors: map[string]bool{}}
	for _, kind := range strings.Split(errors, ",") {
		if kind != "" {
			r.errors[kind] = true
		}
	}
	for _, text := range strings.Split(pauses, ",") {
		if text == "" {
			continue
		}
		pause, err := time.ParseDuration(text)
		if err != nil {
			return nil, err
		}
		r.pauses = append(r.pauses, pause)
	}
	return r, nil
}

// worthLooking: might this answer be a transient failure? Peeks at a 200's first bytes only.
func worthLooking(response *http.Response, peek func(int) ([]byte, error)) bool {
	if response.Header.Get("Content-Encoding") != "" || response.ContentLength <= 0 ||
		response.ContentLength > checkedBytes {
		return false
	}
	switch response.StatusCode {
	case http.StatusInternalServerError, http.StatusServiceUnavailable:
		return true
	case http.StatusOK:
		head, err := peek(int(min(response.ContentLength, headBytes)))
		return err == nil && partialHead(head)
	}
	return false
}

// Transient: the error type of a transient failure in this answer's body, or "".
func (r *Retry) Transient(body []byte) string {
	var answer any
	if json.Unmarshal(body, &answer) != nil {
		return ""
	}
	return r.find(answer)
}

func (r *Retry) find(value any) string {
	switch v := value.(type) {
	case map[string]any:
		if kind, ok := v["type"].(string); ok && r.errors[kind] {
			return kind
		}
		for _, inner := range v {
			if kind := r.find(inner); kind != "" {
				return kind
			}
		}
	case []any:
		for _, inner := range v {
			if kind := r.find(inner); kind != "" {
				return kind
			}
		}
	}
	return ""
}

// readWhole: the answer's body read (it is at most checkedBytes), put back for passing on.
func readWhole(response *http.Response) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(response.Body, response.ContentLength))
	response.Body.Close()
	response.Body = io.NopCloser(bytes.NewReader(body))
	return body, err
}
