package main

// Sending a read again when the engine failed it for a moment: the same decision as the Python
// gateway's (services/gateway/retries.py), whose error types and pauses it is started with.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
)

const (
	checkedBytes = 1 << 20 // larger answers are passed on unread
	headBytes    = 512     // a search answer's `_shards` is in its first bytes
)

var partialHead = regexp.MustCompile(`"_shards"\s*:\s*\{[^}]*"failed"\s*:\s*[1-9]`)

// scrollParam: a search that opens a scroll context is not sent again (retries.SCROLL)
var scrollParam = regexp.MustCompile(`(?:^|&)scroll=`)

func opensScroll(query string) bool { return scrollParam.MatchString(query) }

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
		return err == nil && partialHead.Match(head)
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
