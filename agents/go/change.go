package main

// A run's change (agent.proto, RunChange), made with git the way the reference agent makes it: the
// clone's head is the base; after the command exits 0 what it left is committed, the head is pushed
// to the run's branch, and the commits, the diff stat and the patch between base and head are read.
// Every git command goes through a gitFunc, so the agent runs them as part of the run (a stop reaches
// them, their errors reach the log) and tests run them plainly.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

const (
	maxListedCommits = 250     // RunChange.commits
	maxSubjectChars  = 1_000   // what the server keeps of a commit subject
	maxSummaryChars  = 65_536  // what the server keeps of RunChange.summary
	maxPrURLChars    = 2_048   // the server ignores longer pull-request links
	resultFileLimit  = 8 << 20 // a result file larger than this is ignored
	commitLineLimit  = 16 << 10
	numstatLineLimit = 64 << 10
)

// pinnedDiffOptions fix what a user's git config could change in a patch or its stat (agent.proto, RunChange).
var pinnedDiffOptions = []string{"--full-index", "--no-color", "--no-ext-diff", "--no-textconv", "--no-relative", "--src-prefix=a/", "--dst-prefix=b/", "--find-renames", "--diff-algorithm=myers"}

// gitFunc runs `git <args>` in the clone. Its stdout goes to stdout (nil: the job's log, or nowhere).
// It returns git's exit code (-1 when git did not exit by itself) and its stderr; err only when git
// could not be run.
type gitFunc func(stdout io.Writer, args ...string) (code int, stderr string, err error)

// gitError is a git command that failed; Reason is git's own words.
type gitError struct {
	Args   []string
	Reason string
}

func (e *gitError) Error() string { return e.Reason }

// runGit runs a git command that must succeed.
func runGit(g gitFunc, stdout io.Writer, args ...string) error {
	code, stderr, err := g(stdout, args...)
	if err != nil {
		return &gitError{Args: args, Reason: "could not run git: " + err.Error()}
	}
	if code != 0 {
		reason := gitFailure(stderr)
		if reason == "" {
			reason = fmt.Sprintf("git %s exited with code %d", args[0], code)
			if code < 0 {
				reason = fmt.Sprintf("git %s was stopped", args[0])
			}
		}
		return &gitError{Args: args, Reason: reason}
	}
	return nil
}

// gitOutput is a git command's stdout, trimmed.
func gitOutput(g gitFunc, args ...string) (string, error) {
	var out bytes.Buffer
	if err := runGit(g, &out, args...); err != nil {
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}

// ---- before the command ----

// startBranch is the branch a run clones: the parent's branch for a rework job that has one, else
// the repository's default branch ("" for the remote's HEAD).
func startBranch(asg *pb.JobAssignment) string {
	if b := asg.GetRevises().GetBranch(); b != "" {
		return b
	}
	return asg.GetRepository().GetDefaultBranch()
}

// cloneArgs: a shallow clone of the start branch into repoDir.
func cloneArgs(asg *pb.JobAssignment, repoDir string) []string {
	args := []string{"clone"}
	if b := startBranch(asg); b != "" {
		args = append(args, "--branch", b)
	}
	return append(args, "--depth", "1", "--", asg.GetRepository().GetCloneUrl(), repoDir)
}

// pushMarkerRef is the ref a rework's push sets to the commit it pushed, atomically with the branch
// (agent.proto, RunChange): a later attempt of the job that finds the branch there knows the move was
// the job's own, not someone else's.
func pushMarkerRef(jobID string) string { return "refs/agent-jobs/" + jobID }

// baseCommit reads the clone's head (cloned) and says what the run starts from (base). A rework run
// whose branch is not at its parent's head looks up the remote's push marker of its job: when it is at
// the branch's head, an earlier attempt of this job pushed it and was lost before its outcome was
// recorded, so the clone goes back to the parent's head and the push will replace that attempt's
// commits; otherwise failure says the branch moved (the run must not start then). err is a git
// failure; say writes to the job's log.
func baseCommit(g gitFunc, asg *pb.JobAssignment, say func(string)) (base, cloned, failure string, err error) {
	cloned, err = gitOutput(g, "rev-parse", "--verify", "HEAD")
	if err != nil {
		return "", "", "", err
	}
	revises := asg.GetRevises()
	if revises.GetBranch() == "" || strings.EqualFold(cloned, revises.GetHeadCommit()) {
		return cloned, cloned, "", nil
	}
	ref := pushMarkerRef(asg.GetJobId())
	listed, err := gitOutput(g, "ls-remote", "--refs", "origin", ref)
	if err != nil {
		return "", cloned, "could not read " + ref + ": " + err.Error(), nil
	}
	marked := ""
	for _, line := range strings.Split(listed, "\n") {
		if fields := strings.Fields(line); len(fields) == 2 && fields[1] == ref {
			marked = fields[0]
		}
	}
	if !strings.EqualFold(marked, cloned) {
		return cloned, cloned, fmt.Sprintf("branch moved: %s is at %s, the job revises %s", revises.GetBranch(), cloned, revises.GetHeadCommit()), nil
	}
	say(fmt.Sprintf("%s is at %s, pushed by an earlier attempt of this job: starting again from %s, and replacing that push", revises.GetBranch(), cloned, revises.GetHeadCommit()))
	for _, args := range [][]string{{"fetch", "--quiet", "--depth", "1", "origin", revises.GetHeadCommit()}, {"reset", "--quiet", "--hard", revises.GetHeadCommit()}} {
		say("$ git " + strings.Join(args, " "))
		if err := runGit(g, nil, args...); err != nil {
			return "", cloned, args[0] + " failed: " + err.Error(), nil
		}
	}
	return revises.GetHeadCommit(), cloned, "", nil
}

// authorEnv adds the configured author and committer to env, except where env already names them.
func authorEnv(env []string, author gitAuthor) []string {
	values := []struct{ name, value string }{
		{"GIT_AUTHOR_NAME", author.Name}, {"GIT_AUTHOR_EMAIL", author.Email},
		{"GIT_COMMITTER_NAME", author.Name}, {"GIT_COMMITTER_EMAIL", author.Email},
	}
	out := append([]string{}, env...)
	for _, v := range values {
		if !hasEnv(env, v.name) {
			out = append(out, v.name+"="+v.value)
		}
	}
	return out
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// parentEnv is what a rework run's command is told about the change it continues.
func parentEnv(asg *pb.JobAssignment) []string {
	r := asg.GetRevises()
	if r == nil {
		return nil
	}
	return []string{
		"JOB_PARENT_ID=" + asg.GetRevisesJobId(),
		"JOB_PARENT_BRANCH=" + r.GetBranch(),
		"JOB_PARENT_HEAD=" + r.GetHeadCommit(),
		"JOB_PARENT_SUMMARY=" + r.GetSummary(),
	}
}

// ---- after the command ----

// commitMessage: the prompt's first line (cut to 72 characters; "agent job" when there is none),
// "Rework: " before it for a rework job, then a blank line and "Job: <job id>".
func commitMessage(asg *pb.JobAssignment) string {
	line, _, _ := strings.Cut(strings.TrimSpace(strings.ReplaceAll(asg.GetPrompt(), "\x00", "")), "\n")
	subject := strings.TrimSpace(cutRunes(strings.TrimSpace(line), 72))
	if subject == "" {
		subject = "agent job"
	}
	if asg.GetRevises() != nil {
		subject = "Rework: " + subject
	}
	return subject + "\n\nJob: " + asg.GetJobId()
}

// commitLeftovers commits what the command left uncommitted (as `git add --all` sees it, .gitignore
// respected); nothing when it left nothing.
func commitLeftovers(g gitFunc, message string) error {
	if err := runGit(g, nil, "add", "--all"); err != nil {
		return err
	}
	code, stderr, err := g(nil, "diff", "--cached", "--quiet")
	switch {
	case err != nil:
		return &gitError{Reason: "could not run git: " + err.Error()}
	case code == 0:
		return nil
	case code != 1:
		return &gitError{Reason: firstNonEmpty(gitFailure(stderr), fmt.Sprintf("git diff --cached exited with code %d", code))}
	}
	return runGit(g, nil, "commit", "-q", "-m", message)
}

// changeBranch is where a run's change goes: the parent's branch for a rework job that has one (see
// pushArgs); otherwise a branch of the job's own, <prefix><job id>, replacing what an earlier attempt of
// the job pushed there (force).
func changeBranch(asg *pb.JobAssignment, prefix string) (branch string, rework bool) {
	if b := asg.GetRevises().GetBranch(); b != "" {
		return b, true
	}
	return prefix + asg.GetJobId(), false
}

// pushArgs: a job's own branch is forced; a rework's goes only onto the head its clone found (the
// parent's, or an earlier attempt's it replaces), so a branch someone moved meanwhile is refused, not
// overwritten, and its push marker goes with it or neither does.
func pushArgs(branch string, rework bool, cloned, jobID string) []string {
	if !rework {
		return []string{"push", "--force", "origin", "HEAD:refs/heads/" + branch}
	}
	return []string{"push", "--atomic", "--force-with-lease=refs/heads/" + branch + ":" + cloned, "origin", "HEAD:refs/heads/" + branch, "+HEAD:" + pushMarkerRef(jobID)}
}

// pushFailure is why a push failed, in git's words: its first " ! [" line (the ref it refused, which
// says more than an atomic push's own first error line), else its first "error:" or "fatal:" line,
// else its last line.
func pushFailure(output string) string {
	lines := strings.Split(output, "\n")
	for _, line := range lines {
		if strings.HasPrefix(line, " ! [") {
			return strings.TrimSpace(line)
		}
	}
	for _, line := range lines {
		if strings.HasPrefix(line, "error:") || strings.HasPrefix(line, "fatal:") {
			if l := strings.TrimSpace(line); l != "" {
				return l
			}
		}
	}
	return lastLine(output)
}

// listCommits reads base..head oldest first: how many, and the first maxListedCommits with subjects.
// Streamed, so a branch with very many commits costs no memory.
func listCommits(g gitFunc, base, head string) (uint32, []*pb.Commit, error) {
	pr, pw := io.Pipe()
	type parsed struct {
		count   uint64
		commits []*pb.Commit
		err     error
	}
	done := make(chan parsed, 1)
	go func() {
		var p parsed
		p.err = eachLine(pr, commitLineLimit, func(line []byte) {
			p.count++
			if len(p.commits) >= maxListedCommits {
				return
			}
			sha, subject, _ := bytes.Cut(line, []byte{0})
			text, _ := decodeUTF8(subject, true)
			p.commits = append(p.commits, &pb.Commit{Sha: string(sha), Subject: cutRunes(text, maxSubjectChars)})
		})
		pr.CloseWithError(p.err)
		done <- p
	}()
	// --format with %x00: a subject may hold anything but a newline or a NUL.
	err := runGit(g, pw, "log", "--no-show-signature", "--encoding=UTF-8", "--reverse", "--format=%H%x00%s", base+".."+head)
	pw.Close()
	p := <-done
	if err == nil {
		err = p.err
	}
	if err != nil {
		return 0, nil, err
	}
	return clampUint32(p.count), p.commits, nil
}

// diffStat sums `git diff --numstat base head`: one line per file; a binary file ("-") adds no lines.
func diffStat(g gitFunc, base, head string) (*pb.DiffStat, error) {
	var files, ins, del uint64
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := eachLine(pr, numstatLineLimit, func(line []byte) {
			a, b := parseNumstat(line)
			files++
			ins += a
			del += b
		})
		pr.CloseWithError(err)
		done <- err
	}()
	err := runGit(g, pw, append(append([]string{"-c", "core.quotePath=true", "diff", "--numstat"}, pinnedDiffOptions...), base, head)...)
	pw.Close()
	if perr := <-done; err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	return &pb.DiffStat{FilesChanged: clampUint32(files), Insertions: clampUint32(ins), Deletions: clampUint32(del)}, nil
}

// parseNumstat reads "<added>\t<removed>\t<path>"; "-" (a binary file) counts 0.
func parseNumstat(line []byte) (added, removed uint64) {
	fields := strings.SplitN(string(line), "\t", 3)
	count := func(i int) uint64 {
		if i >= len(fields) {
			return 0
		}
		n, err := strconv.ParseUint(fields[i], 10, 64)
		if err != nil {
			return 0
		}
		return n
	}
	return count(0), count(1)
}

// writePatch writes the patch base..head to file, byte for byte, and returns its size.
func writePatch(g gitFunc, base, head, file string) (uint64, error) {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	counter := &countingWriter{w: f}
	err = runGit(g, counter, append(append([]string{"-c", "core.quotePath=true", "diff", "--binary"}, pinnedDiffOptions...), base, head)...)
	if err == nil {
		err = counter.err
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return 0, err
	}
	return counter.n, nil
}

// countingWriter counts what it writes, and keeps the first write error (the rest is discarded, so
// that git never blocks on a full disk).
type countingWriter struct {
	w   io.Writer
	n   uint64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err == nil {
		_, c.err = c.w.Write(p)
	}
	c.n += uint64(len(p))
	return len(p), nil
}

// runReport is what the command says about its run in the result file.
type runReport struct {
	Summary        string
	PullRequestURL string
}

// readResultFile reads the command's result file: a JSON object with "summary" and "pullRequestUrl",
// both optional strings. A missing file is an empty report. note, when set, is the line for the job's
// log saying what was ignored: the whole file when it is not such an object, only the link when it is
// not an absolute web URL.
func readResultFile(file string) (report runReport, note string) {
	ignored := func(why string) (runReport, string) { return runReport{}, "ignoring the result file: " + why }
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return runReport{}, ""
	}
	if err != nil {
		return ignored(err.Error())
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, resultFileLimit+1))
	if err != nil {
		return ignored(err.Error())
	}
	if len(data) > resultFileLimit {
		return ignored(fmt.Sprintf("it is larger than %d MiB", resultFileLimit>>20))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		if err != nil && !isTypeError(err) {
			return ignored("invalid JSON: " + err.Error())
		}
		return ignored("it is not a JSON object")
	}
	var summary, link string
	for _, f := range []struct {
		key string
		to  *string
	}{{"summary", &summary}, {"pullRequestUrl", &link}} {
		if raw, ok := fields[f.key]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, f.to); err != nil {
				return ignored(f.key + " is not a string")
			}
		}
	}
	report.Summary = strings.ToValidUTF8(cutRunes(summary, maxSummaryChars), "\uFFFD")
	if link != "" && !isWebURL(link) {
		return report, fmt.Sprintf("ignoring the result file's pullRequestUrl: %q is not an absolute http or https URL", cutRunes(link, 200))
	}
	report.PullRequestURL = link
	return report, ""
}

func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

func isWebURL(text string) bool {
	if len(text) > maxPrURLChars {
		return false
	}
	u, err := url.Parse(text)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// ---- the whole change ----

// changeSpec is what makeChange needs besides git.
type changeSpec struct {
	Asg  *pb.JobAssignment
	Base string
	// Cloned is the head the clone found: a rework's push goes only onto it.
	Cloned       string
	BranchPrefix string
	NoPush       bool
	PatchFile    string // where the patch is written
	ResultFile   string
	// Say writes a line to the job's log (LOG_STREAM_SYSTEM).
	Say func(string)
}

// changeFailure is a run whose command succeeded but whose change could not be made or delivered: the
// run fails with Reason.
type changeFailure struct{ Reason string }

func (e *changeFailure) Error() string { return e.Reason }

// makeChange commits the command's leftovers, pushes, and describes the change. A *changeFailure is
// the run's failure reason.
func makeChange(g gitFunc, spec changeSpec) (*pb.RunChange, error) {
	if err := commitLeftovers(g, commitMessage(spec.Asg)); err != nil {
		return nil, &changeFailure{"commit failed: " + err.Error()}
	}
	head, err := gitOutput(g, "rev-parse", "--verify", "HEAD")
	if err != nil {
		return nil, &changeFailure{"agent error: git rev-parse HEAD: " + err.Error()}
	}
	report, note := readResultFile(spec.ResultFile)
	if note != "" {
		spec.Say(note)
	}
	change := &pb.RunChange{BaseCommit: spec.Base, HeadCommit: head, DiffStat: &pb.DiffStat{}, Commits: []*pb.Commit{},
		Summary: report.Summary, PullRequestUrl: report.PullRequestURL}
	if head == spec.Base {
		spec.Say("no changes")
		return change, nil
	}
	branch, rework := changeBranch(spec.Asg, spec.BranchPrefix)
	change.Branch = branch
	if spec.NoPush {
		spec.Say("not pushing (--no-push): the change would go to " + branch)
	} else {
		args := pushArgs(branch, rework, spec.Cloned, spec.Asg.GetJobId())
		spec.Say("$ git " + strings.Join(args, " "))
		code, output, err := g(nil, args...)
		if err != nil {
			return nil, &changeFailure{"push failed: could not run git: " + err.Error()}
		}
		if code != 0 {
			return nil, &changeFailure{"push failed: " + firstNonEmpty(pushFailure(output), fmt.Sprintf("git push exited with code %d", code))}
		}
		change.Pushed = true
	}
	if change.CommitCount, change.Commits, err = listCommits(g, spec.Base, head); err != nil {
		return nil, &changeFailure{"agent error: git log: " + err.Error()}
	}
	if change.DiffStat, err = diffStat(g, spec.Base, head); err != nil {
		return nil, &changeFailure{"agent error: git diff --numstat: " + err.Error()}
	}
	if change.PatchSize, err = writePatch(g, spec.Base, head, spec.PatchFile); err != nil {
		return nil, &changeFailure{"agent error: cannot keep the patch: " + err.Error()}
	}
	s := change.DiffStat
	spec.Say(fmt.Sprintf("change on %s: %d commit(s), %d file(s) changed, +%d -%d, patch of %d bytes",
		branch, change.CommitCount, s.FilesChanged, s.Insertions, s.Deletions, change.PatchSize))
	return change, nil
}

// ---- helpers ----

// eachLine calls fn with each line of r (without its "\n"); a line longer than limit is cut to limit.
func eachLine(r io.Reader, limit int, fn func([]byte)) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line) < limit {
			room := limit - len(line)
			if len(chunk) < room {
				room = len(chunk)
			}
			line = append(line, chunk[:room]...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == nil:
			fn(bytes.TrimSuffix(line, []byte{'\n'}))
			line = line[:0]
		case err == io.EOF:
			if len(line) > 0 {
				fn(line)
			}
			return nil
		default:
			return err
		}
	}
}

// validText makes text valid UTF-8 (as protobuf strings must be), as the log's decoder would.
func validText(text string) string {
	if utf8.ValidString(text) {
		return text
	}
	decoded, _ := decodeUTF8([]byte(text), true)
	return decoded
}

// cutRunes keeps the first max characters (code points) of s.
func cutRunes(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i]
		}
		n++
	}
	return s
}

func clampUint32(n uint64) uint32 {
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
