"""Real coordsync processes for the functional tests: configs, start,
signals, logs, and coordsync-status runs."""

import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def write_config(path, sections):
    """Write an ini file from ``{section: {option: value}}``."""
    with open(path, 'w') as fh:
        for section, options in sections.items():
            fh.write('[%s]\n' % section)
            for key, value in options.items():
                fh.write('%s = %s\n' % (key, value))
            fh.write('\n')
    return path


def wait_for(predicate, timeout, interval=0.1, message='condition'):
    """Poll ``predicate`` until true; return the seconds it took."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError('%s not met within %.1fs'
                                 % (message, timeout))
        time.sleep(interval)


class Process:
    """A child process with its output in a log file; ``env``: variables
    set for it on top of this process's environment."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, 'ab')
        self.popen = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
            env=dict(os.environ, **env) if env else None)

    def log(self):
        with open(self.log_path, encoding='utf-8', errors='replace') as fh:
            return fh.read()

    def wait_log(self, text, timeout=30.0):
        def seen():
            if self.popen.poll() is not None and text not in self.log():
                raise AssertionError('%s exited (%s) before logging %r:\n%s'
                                     % (self.name, self.popen.returncode,
                                        text, self.log()[-3000:]))
            return text in self.log()
        return wait_for(seen, timeout, message='%s logs %r'
                        % (self.name, text))

    def signal(self, signum):
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def kill(self):
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout=15.0):
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._log.close()

    @property
    def alive(self):
        return self.popen.poll() is None


def module_argv(module, *args):
    return [sys.executable, '-m', module] + list(args)


def script_argv(script, *args):
    return [sys.executable, os.path.join(HERE, script)] + list(args)


def run_module(module, *args, check=True, timeout=60, text=True):
    """Run ``python -m module args``; raise with its output if it fails.

    ``text=False`` keeps stdout as bytes (object bodies).
    """
    result = subprocess.run(module_argv(module, *args), capture_output=True,
                            text=text, timeout=timeout)
    if check and result.returncode != 0:
        out, err = result.stdout, result.stderr
        if not text:
            out, err = (out.decode(errors='replace'),
                        err.decode(errors='replace'))
        raise AssertionError('%s %s: exit %d\n%s\n%s' % (
            module, ' '.join(args), result.returncode, out, err))
    return result


def run_status(config, *args, timeout=60):
    """Run coordsync-status; return (exit code, parsed JSON or text)."""
    argv = module_argv('coordsync.cmd.status', '--config-file', config,
                       *args)
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=timeout)
    out = result.stdout
    if '--format' in args and 'json' in args and out.strip():
        out = json.loads(out)
    return result.returncode, out, result.stderr


def member_nodes(config):
    """Node names of the members coordsync-status sees."""
    code, report, err = run_status(config, '--format', 'json')
    if code == 2:
        raise AssertionError('status could not reach backend: %s' % err)
    return sorted(m['node'] for m in report['members'])
