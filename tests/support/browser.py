"""A real headless Chromium for the tests, driven over the DevTools protocol.

The browser talks DevTools over a pipe (``--remote-debugging-pipe``: it
reads commands on fd 3 and writes replies and events on fd 4, JSON
messages ended by NUL), so no port, no network and no package beyond the
standard library are needed.  The test starts it and stops it by PID.

Flags are those that work on a machine without network (see
docs/development.md): without ``--disable-background-networking`` and
friends Chromium keeps trying to reach Google's hosts.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-default-apps', '--disable-extensions', '--mute-audio',
         '--remote-debugging-pipe')
WAIT = 60.0


def chromium_path() -> Optional[str]:
    """Debian's chromium (tests/setup_system.sh installs it), or None."""
    for name in ('chromium', 'chromium-browser'):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """The browser answered a command with an error, or not in time."""


class Chromium:
    """One browser process with one page; events are kept for inspection."""

    def __init__(self, executable: str, width: int = 1000, height: int = 900) -> None:
        self.profile_dir = tempfile.mkdtemp(prefix='asyncflow-chromium-')
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self._next_id = 0
        self._replies: Dict[int, 'queue.Queue[Dict[str, Any]]'] = {}
        self._lock = threading.Lock()
        self.events: List[Dict[str, Any]] = []
        self._event_seen = threading.Condition(self._lock)

        def child_fds() -> None:            # the browser's fd 3 and 4 are the pipe's ends
            high_r, high_w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(high_r, 3, inheritable=True)
            os.dup2(high_w, 4, inheritable=True)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f'--user-data-dir={self.profile_dir}',
             f'--window-size={width},{height}', 'about:blank'],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # fds 3 and 4 are kept through close_fds (they exist here: the pipes are at
            # 3 or above), and child_fds points them at the pipes before exec
            preexec_fn=child_fds, close_fds=True, pass_fds=(3, 4),
            start_new_session=True)
        self.pid = self.proc.pid
        os.close(to_child_r)
        os.close(from_child_w)
        self._reader = threading.Thread(target=self._read, name='chromium-reader', daemon=True)
        self._reader.start()
        self.session = self._attach()

    # ------------------------------------------------------------ protocol

    def _read(self) -> None:
        buffer = b''
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b''
            if not chunk:
                break
            buffer += chunk
            while b'\0' in buffer:
                raw, buffer = buffer.split(b'\0', 1)
                message = json.loads(raw)
                with self._lock:
                    if 'id' in message and message['id'] in self._replies:
                        self._replies[message['id']].put(message)
                    else:
                        self.events.append(message)
                        self._event_seen.notify_all()

    def send(self, method: str, params: Optional[Dict[str, Any]] = None,
             session: Optional[str] = None, timeout: float = WAIT) -> Dict[str, Any]:
        """Send a command (to the page's session by default); return its result."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            box: 'queue.Queue[Dict[str, Any]]' = queue.Queue()
            self._replies[ident] = box
        message: Dict[str, Any] = {'id': ident, 'method': method, 'params': params or {}}
        target = session if session is not None else getattr(self, 'session', None)
        if target:
            message['sessionId'] = target
        os.write(self._to_child, json.dumps(message).encode() + b'\0')
        try:
            reply = box.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f'{method}: no answer in {timeout} s') from None
        finally:
            with self._lock:
                self._replies.pop(ident, None)
        if 'error' in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get('result', {})

    def _attach(self) -> str:
        targets = self.send('Target.getTargets', session='')['targetInfos']
        page = next((t for t in targets if t['type'] == 'page'), None)
        target_id = page['targetId'] if page else \
            self.send('Target.createTarget', {'url': 'about:blank'}, session='')['targetId']
        session = self.send('Target.attachToTarget', {'targetId': target_id, 'flatten': True},
                            session='')['sessionId']
        for domain in ('Page.enable', 'Runtime.enable', 'Log.enable'):
            self.send(domain, session=session)
        return session

    def wait_event(self, method: str, since: int = 0, timeout: float = WAIT) -> Dict[str, Any]:
        """The first event ``method`` at index ``since`` or later of :attr:`events`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for event in self.events[since:]:
                    if event.get('method') == method:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f'no {method} event in {timeout} s')
                self._event_seen.wait(left)

    # ------------------------------------------------------------ page

    def open(self, url: str, timeout: float = WAIT) -> float:
        """Load ``url``; return the seconds until its load event (wall clock)."""
        with self._lock:
            mark = len(self.events)
        started = time.perf_counter()
        self.send('Page.navigate', {'url': url})
        self.wait_event('Page.loadEventFired', since=mark, timeout=timeout)
        return time.perf_counter() - started

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools runs it, not the page)."""
        result = self.send('Runtime.evaluate', {'expression': expression,
                                                'returnByValue': True})
        if 'exceptionDetails' in result:
            raise BrowserError(f"evaluating {expression!r}: {result['exceptionDetails']}")
        return result['result'].get('value')

    def errors(self, since: int = 0) -> List[str]:
        """Console errors, uncaught exceptions and error log entries since event ``since``."""
        found = []
        with self._lock:
            events = list(self.events[since:])
        for event in events:
            method, params = event.get('method'), event.get('params', {})
            if method == 'Runtime.exceptionThrown':
                found.append(str(params.get('exceptionDetails', {}).get('text')))
            elif method == 'Runtime.consoleAPICalled' and params.get('type') in ('error', 'assert'):
                found.append(' '.join(str(a.get('value', a.get('description')))
                                      for a in params.get('args', [])))
            elif method == 'Log.entryAdded' and params.get('entry', {}).get('level') == 'error':
                found.append(params['entry'].get('text', ''))
        return found

    def event_count(self) -> int:
        with self._lock:
            return len(self.events)

    def screenshot(self, path: str, width: int = 1000) -> None:
        """A PNG of the whole page."""
        height = int(self.evaluate('document.documentElement.scrollHeight'))
        self.send('Emulation.setDeviceMetricsOverride',
                  {'width': width, 'height': height, 'deviceScaleFactor': 1, 'mobile': False})
        data = self.send('Page.captureScreenshot', {'format': 'png'})['data']
        import base64
        with open(path, 'wb') as handle:
            handle.write(base64.b64decode(data))
        self.send('Emulation.clearDeviceMetricsOverride')

    # ------------------------------------------------------------ lifetime

    def close(self, timeout: float = 15.0) -> None:
        """Ask the browser to close; kill its process group by PID if it does not."""
        try:
            self.send('Browser.close', session='', timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout)
        # its helpers (zygote, renderers) are in its process group: none may outlive it
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._reader.join(5)
        shutil.rmtree(self.profile_dir, ignore_errors=True)
