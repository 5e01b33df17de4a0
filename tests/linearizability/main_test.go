package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds a porcupine operation; ret < 0 means the outcome is unknown.
func op(client int, kind, expected, value string, call, ret int64, ok bool, read string) porcupine.Operation {
	out := kvOutput{ok: ok, value: read}
	if ret < 0 {
		out = kvOutput{unknown: true}
		ret = math.MaxInt64
	}
	return porcupine.Operation{ClientId: client, Input: kvInput{kind: kind, value: value, expected: expected}, Call: call, Output: out, Return: ret}
}

func check(t *testing.T, ops []porcupine.Operation) porcupine.CheckResult {
	t.Helper()
	res, _ := porcupine.CheckOperationsVerbose(kvModel, ops, 5*time.Second)
	return res
}

func TestConcurrentHistoryIsLinearizable(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, "put", "", "a", 0, 10, true, ""),
		op(1, "get", "", "", 5, 8, false, ""), // concurrent with put(a): may see absent
		op(1, "cas", "a", "b", 11, 20, true, ""),
		op(0, "get", "", "", 15, 25, false, "b"),
		op(2, "cas", "a", "c", 16, 30, false, ""),
	}
	if res := check(t, ops); res != porcupine.Ok {
		t.Fatalf("got %v, want Ok", res)
	}
}

func TestStaleReadIsIllegal(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, "put", "", "a", 0, 10, true, ""),
		op(0, "put", "", "b", 11, 20, true, ""),
		op(1, "get", "", "", 21, 30, false, "a"),
	}
	if res := check(t, ops); res != porcupine.Illegal {
		t.Fatalf("got %v, want Illegal", res)
	}
}

func TestUnknownWriteEitherWay(t *testing.T) {
	for _, read := range []string{"a", "b"} {
		ops := []porcupine.Operation{
			op(0, "put", "", "a", 0, 10, true, ""),
			op(1, "put", "", "b", 11, -1, false, ""),
			op(2, "get", "", "", 50, 60, false, read),
			op(2, "get", "", "", 70, 80, false, read),
		}
		if res := check(t, ops); res != porcupine.Ok {
			t.Fatalf("read %q: got %v, want Ok", read, res)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	bad := map[string][]porcupine.Operation{"k": {
		op(0, "put", "", "a", 0, 10, true, ""),
		op(1, "cas", "a", "b", 11, 20, true, ""),
		op(1, "get", "", "", 21, 30, false, "a"),
	}}
	var out bytes.Buffer
	if code := run(bad, 5*time.Second, "", &out); code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, out.String())
	}
	if !strings.Contains(out.String(), `"illegal"`) || !strings.Contains(out.String(), "cannot linearize next") {
		t.Fatalf("no illegal verdict with detail: %s", out.String())
	}
}
