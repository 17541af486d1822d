"""The seal signature: PAdES on the decision PDF, with the signer's identification inside.

BankID and the other e-legitimations identify the decision-maker; they do not
sign PDFs. The installation's seal key does, on the decision-maker's behalf,
right after the identification succeeds. What binds the two is in the signed
file itself: the identification evidence is embedded as ``identifiering.json``
*before* signing, so the signature covers it, and the visible stamp and the
signature dictionary name the person, their role and how they identified.

The signature is an approval signature, not a certification (DocMDP) one: a
certification signature must be the first in the file and fixes what may change
afterwards, which would stand in the way of a second signer or a later archival
timestamp (B-LTA), while an approval signature already makes every later change
detectable (validation reports an incremental update after it). PAdES baseline
B-T with an RFC 3161 timestamp when a TSA is configured, B-B otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import io
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import util as multiprocessing_util
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pyhanko.keys import load_certs_from_pemder
from pyhanko.pdf_utils import embed
from pyhanko.pdf_utils.content import RawContent
from pyhanko.pdf_utils.font.basic import SimpleFontEngineFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.layout import (
    AxisAlignment,
    BoxConstraints,
    InnerScaling,
    Margins,
    SimpleBoxLayoutRule,
)
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign.fields import SigFieldSpec, SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, Signer, SimpleSigner
from pyhanko.sign.signers.pdf_byterange import BuildProps
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.util import LazySession
from pyhanko_certvalidator.util import get_pyca_cryptography_hash, process_pss_params

from config.settings import Pkcs11Settings, SigningSettings
from signing.document import LOCAL_TIME, SIGNATURE_FIELD, SignatureBox
from signing.verify import EVIDENCE_FILE

__all__ = [
    "EVIDENCE_FILE",
    "Seal",
    "SealError",
    "SealedVersion",
    "StampInfo",
    "close_signer",
    "load_signer",
    "render_and_seal",
    "seal_pdf",
    "sign_decision",
]

_STAMP_LABELS: Mapping[str, Mapping[str, str]] = {
    "sv": {
        "signer": "Undertecknat av",
        "role": "Roll",
        "time": "Tid",
        "method": "Identifierad med",
        "case": "Ärende",
        "seal": "Sigill",
        "reason": "Beslut fattat av {name}, {role}; identifierad med {method}",
        "evidence": "Identifiering av beslutsfattaren",
        # A worker's record (a form with signer = "none"): documented, not decided.
        "record_signer": "Dokumenterat av",
        "record_reason": "Dokumenterat av {name}, {role}; identifierad med {method}",
        "record_evidence": "Identifiering av handläggaren",
    },
    "en": {
        "signer": "Signed by",
        "role": "Role",
        "time": "Time",
        "method": "Identified with",
        "case": "Case",
        "seal": "Seal",
        "reason": "Decision made by {name}, {role}; identified with {method}",
        "evidence": "Identification of the decision-maker",
        "record_signer": "Documented by",
        "record_reason": "Documented by {name}, {role}; identified with {method}",
        "record_evidence": "Identification of the social worker",
    },
}
log = logging.getLogger(__name__)
_T = TypeVar("_T")

_STAMP_LINES = ("signer", "role", "time", "method", "case", "seal")
_APPLICATION = BuildProps(name="Socialjour", revision="0.1")


class SealError(Exception):
    """The seal key cannot be used, or the document cannot be sealed."""


@dataclass(frozen=True)
class StampInfo:
    """What the visible stamp says about the signing."""

    signer_name: str
    signer_role: str
    method_label: str  # how they identified, as people say it: "BankID", "Freja eID", ...
    signed_at: datetime
    case_number: str
    language: str = "sv"
    #: A worker's record, not a decision: the stamp says "Dokumenterat av".
    record: bool = False


@dataclass(frozen=True)
class SealedVersion:
    """What :meth:`Seal.sign_version` made: the sealed PDF, and which document it seals."""

    pdf: bytes
    #: True: the freshly rendered version; False: the fallback document as it was.
    rendered: bool
    #: Why rendering failed (the exception's class name), for the bot's log; None if it did not.
    failure: str | None = None


# -- the key ---------------------------------------------------------------------------


def load_signer(settings: SigningSettings) -> Signer:
    """The seal signer from the configured PKCS#12 file or PKCS#11 token.

    A PKCS#11 signer keeps its token session open for its lifetime; hand it to
    :func:`close_signer` when done.
    """
    if settings.pkcs11 is not None:
        return _pkcs11_signer(settings.pkcs11)
    if settings.seal_pkcs12 is None:
        raise SealError("no seal key configured: set signing.seal_pkcs12 or [signing.pkcs11]")
    password = settings.seal_pkcs12_password
    try:
        data = settings.seal_pkcs12.read_bytes()
        return _ParsedKeySigner.from_pkcs12(
            data, password.encode("utf-8") if password is not None else None
        )
    except OSError as error:
        raise SealError(f"cannot read the seal key {settings.seal_pkcs12}: {error}") from error
    except ValueError as error:
        raise SealError(
            f"cannot open the seal key {settings.seal_pkcs12}: wrong password or not PKCS#12"
        ) from error


class _ParsedKeySigner(SimpleSigner):
    """pyHanko's SimpleSigner with its private key parsed once, when it is loaded.

    SimpleSigner parses its key for every raw signature, and a PDF signature makes
    two (the size estimate signs too). Parsing an RSA key checks it: tens of
    milliseconds of C code that holds the GIL, so the event loop stalled even with
    the sealing in another thread. The signature itself takes under a millisecond.
    """

    _private_key: PrivateKeyTypes | None = None

    @classmethod
    def from_pkcs12(cls, data: bytes, passphrase: bytes | None) -> _ParsedKeySigner:
        loaded = SimpleSigner.load_pkcs12_data(data, other_certs=[], passphrase=passphrase)
        assert loaded.signing_cert is not None
        signer = cls(
            signing_key=loaded.signing_key,
            signing_cert=loaded.signing_cert,
            cert_registry=loaded.cert_registry,
            signature_mechanism=loaded.signature_mechanism,
        )
        signer._private_key = serialization.load_der_private_key(
            loaded.signing_key.dump(), password=None
        )
        return signer

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        key = self._private_key
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        try:
            algorithm = mechanism.signature_algo
        except ValueError:
            algorithm = mechanism["algorithm"].native
        if algorithm == "rsassa_pkcs1v15" and isinstance(key, RSAPrivateKey):
            return key.sign(data, PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))
        if algorithm == "rsassa_pss" and isinstance(key, RSAPrivateKey):
            padding, hash_algorithm = process_pss_params(mechanism["parameters"])
            return key.sign(data, padding, hash_algorithm)
        if algorithm == "ecdsa" and isinstance(key, EllipticCurvePrivateKey):
            return key.sign(data, ECDSA(get_pyca_cryptography_hash(digest_algorithm)))
        return super().sign_raw(data, digest_algorithm)  # other keys: pyHanko's own way


def _pkcs11_signer(settings: Pkcs11Settings) -> Signer:
    try:
        from pkcs11 import PKCS11Error
        from pyhanko.config.pkcs11 import TokenCriteria
        from pyhanko.sign.pkcs11 import PKCS11Signer, open_pkcs11_session
    except ImportError as error:
        raise SealError("PKCS#11 needs python-pkcs11: pip install 'socialjour[hsm]'") from error
    try:
        session = open_pkcs11_session(
            str(settings.module),
            token_criteria=TokenCriteria(label=settings.token_label),
            user_pin=settings.pin,
        )
    except PKCS11Error as error:
        raise SealError(
            f"cannot open PKCS#11 token {settings.token_label!r} with {settings.module}: "
            f"{type(error).__name__}"
        ) from error
    return PKCS11Signer(
        session,
        cert_label=settings.cert_label or settings.key_label,
        key_label=settings.key_label,
    )


def close_signer(signer: Signer) -> None:
    """Release what a signer holds (a PKCS#11 session); harmless for a PKCS#12 signer."""
    session = getattr(signer, "pkcs11_session", None)
    if session is not None:
        session.close()


# -- signing ---------------------------------------------------------------------------


class Seal:
    """The seal key with what every signature reuses, made once at start-up.

    Sealing is CPU work (hashing the file, the RSA signature, laying out the stamp,
    checking the seal certificate against the trust roots: a few hundred
    milliseconds), so it never runs on the event loop, where it would stall every
    Matrix room and the signing page while a decision is signed. The trust roots
    are read and the validation context and TSA client are built once, not per
    signature. Where the work runs:

    - In seal processes (:meth:`from_settings` with ``signing.seal_processes`` > 0,
      how the bot runs): a small pool of processes, each of which loads the key,
      trust roots, validation context and TSA client once when it starts. A worker
      thread would still hold the GIL the event loop needs for the whole signature;
      a process does not, so the bot's rooms go on at full speed meanwhile, and two
      processes sign two decisions at once. See :class:`_SealProcesses`.
    - In this object's own worker thread (a Seal built from a signer object, or
      ``seal_processes = 0``): one thread, because the work holds the GIL, so a
      second thread would not sign any faster, and with one the signer (a PKCS#11
      session) and the validation context are never used from two threads at once.
      Signatures queue behind each other, the TSA's answer included.
    """

    def __init__(
        self,
        signer: Signer | None,
        *,
        trust_roots: Sequence[Path] = (),
        tsa_url: str | None = None,
        timestamper: TimeStamper | None = None,
    ) -> None:
        if tsa_url is not None and timestamper is not None:
            raise ValueError("give tsa_url or timestamper, not both")
        #: The key, in this process; None when it lives in the seal processes.
        self.signer = signer
        self.validation_context = _validation_context(trust_roots)
        # One long-lived TSA client: pyHanko caches its size-estimation token per
        # client, so reusing it saves a round trip to the TSA on every signature; its
        # connections stay open between signatures (see :class:`SigningLoop`).
        self._loop = SigningLoop(tsa_url)
        self.timestamper = self._loop.timestamper if tsa_url is not None else timestamper
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seal")
        # The seal's thread holds the GIL while it signs; the event loop's thread then
        # gets it back after this long at the most (Python's default is 5 ms), which
        # bounds how long a database statement or a message waits behind a signature.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        self._processes: _SealProcesses | None = None
        self._owns_signer = False

    @classmethod
    def from_settings(
        cls,
        settings: SigningSettings,
        signer: Signer | None = None,
        *,
        preload: Sequence[str] = (),
    ) -> Seal:
        """The configured seal key (or ``signer``) with the configured trust roots and TSA.

        With ``settings.seal_processes`` > 0 (and no ``signer``: a key object cannot
        move to another process) the key is loaded in that many seal processes, which
        are started and warmed up here: this returns once each of them holds the key,
        and raises :class:`SealError` if they cannot load it (wrong PIN, unreadable
        trust root), as loading it here would. ``preload`` names the modules of the
        work :meth:`run` will be given, imported by each process as it starts rather
        than by the first decision it gets (a second under load). A key loaded here
        is the seal's own, and :meth:`close` releases it.
        """
        if signer is None and settings.seal_processes > 0:
            seal = cls(None)
            seal._processes = _SealProcesses(settings, preload)
            try:
                seal._processes.warm_up()
            except BaseException:
                seal._processes.close()
                raise
            return seal
        seal = cls(
            signer if signer is not None else load_signer(settings),
            trust_roots=settings.trust_roots,
            tsa_url=settings.tsa_url,
        )
        seal._owns_signer = signer is None
        return seal

    @property
    def process_ids(self) -> tuple[int, ...]:
        """The seal processes running now (none for a seal in a thread)."""
        return self._processes.process_ids if self._processes is not None else ()

    async def sign(
        self,
        pdf: bytes,
        *,
        stamp: StampInfo,
        evidence: Mapping[str, Any] | None,
        box: SignatureBox | None = None,
    ) -> bytes:
        """:func:`seal_pdf` in a seal process or the seal's worker thread; the event loop
        goes on meanwhile."""
        return await self._sealing(seal_pdf, pdf, stamp=stamp, evidence=evidence, box=box)

    async def sign_version(
        self,
        render: Callable[[], bytes | None] | None,
        fallback: bytes,
        *,
        stamp: StampInfo,
        evidence: Callable[[bool], Mapping[str, Any] | None],
    ) -> SealedVersion:
        """Render the document to seal and seal it, as one piece of work where the seal
        works (:func:`render_and_seal`): ``render()`` gives the document (None, an
        exception, or no ``render`` at all: seal ``fallback`` instead),
        ``evidence(rendered)`` what to embed.

        One job, not a render and then a seal: in a seal process the two would queue
        apart, so with several decisions at once every render ran before the first
        seal, and the document crossed between the processes twice. In a process
        ``render`` and ``evidence`` must pickle (module-level functions, partials of
        them over plain data)."""
        return await self._sealing(
            render_and_seal, render, fallback, stamp=stamp, evidence=evidence
        )

    async def _sealing(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """``function(*args, **kwargs)`` with what the seal keeps (the key, the
        validation context, the TSA client, the kept loop) passed as keywords, where
        the seal works: a seal process, else the seal's worker thread."""
        if self._processes is not None:
            return await self._processes.run(
                functools.partial(_with_process_seal, function, *args, **kwargs)
            )
        assert self.signer is not None
        job = functools.partial(
            function,
            *args,
            signer=self.signer,
            validation_context=self.validation_context,
            timestamper=self.timestamper,
            loop=self._loop,
            **kwargs,
        )
        return await asyncio.get_running_loop().run_in_executor(self._worker, job)

    async def run(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Other blocking CPU work where the seal works (a decision's render and seal
        go together through :meth:`sign_version`): in a seal process when there are
        any, so it does not hold the event loop's GIL either, else in a thread of its
        own. In a process,
        ``function`` and its arguments must pickle (a module-level function and plain
        data), and a test's monkeypatching in this process does not reach it."""
        if self._processes is not None:
            return await self._processes.run(functools.partial(function, *args, **kwargs))
        return await asyncio.to_thread(function, *args, **kwargs)

    async def close(self) -> None:
        """Finish the signatures under way, end the worker thread and the seal processes
        (which release their keys), and release the key if the seal loaded it here
        (else whoever loaded it does)."""
        await asyncio.to_thread(self._worker.shutdown, wait=True)
        # On a thread: this loop cannot run inside the caller's. The worker has ended,
        # so nothing else runs on it any more.
        await asyncio.to_thread(self._loop.close)
        if self._processes is not None:
            await asyncio.to_thread(self._processes.close)
        if self._owns_signer and self.signer is not None:
            close_signer(self.signer)


#: How long start-up waits for the seal processes to start and load the key: a new
#: interpreter importing pyHanko takes seconds on a busy machine, a PKCS#11 login more.
WARM_UP_TIME_LIMIT = 120.0
#: The interpreter's GIL switch interval (seconds) in a process that seals in a thread.
GIL_SWITCH_INTERVAL = 0.001

#: How long a stop waits for a seal process to finish its work and end.
CLOSE_TIME_LIMIT = 15.0


class _SealProcesses:
    """A pool of seal processes, each holding the seal key, made once.

    Started with "spawn": a fresh interpreter, never a fork of the bot's process,
    which has threads (a lock held by one of them would stay locked forever in the
    copy) and possibly a PKCS#11 session, which must not be shared with a child.
    The settings, with the PKCS#12 password or the PKCS#11 PIN, reach the children
    pickled through the pool's pipe, never on a command line or in the environment
    (where ``ps`` or ``/proc`` would show them); only the signing settings cross,
    without the identification services' secrets.

    A process that dies (killed, out of memory, a crash in a PKCS#11 module) breaks
    the whole pool in :mod:`concurrent.futures`; the signature under way is then
    made again in a new pool. Sealing is a pure function of its input, so making it
    twice is harmless.
    """

    def __init__(self, settings: SigningSettings, preload: Sequence[str] = ()) -> None:
        self._settings = dataclasses.replace(settings, bankid=None, oidc=None)
        self._preload = tuple(preload)
        self._size = settings.seal_processes
        self._context = multiprocessing.get_context("spawn")
        self._closed = False
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._size,
            mp_context=self._context,
            initializer=_start_seal_process,
            initargs=(self._settings, self._preload),
        )

    def _start_all(self, pool: ProcessPoolExecutor) -> list[Future[int]]:
        # One job each: a pool started with "spawn" starts a process per job submitted
        # while none is idle, so this starts all of them now, not at the first burst.
        return [pool.submit(_seal_process_ready) for _ in range(self._size)]

    def warm_up(self) -> None:
        """Start every process and wait until each holds the key (its error if not)."""
        try:
            for started in self._start_all(self._pool):
                started.result(timeout=WARM_UP_TIME_LIMIT)
        except BrokenProcessPool as error:
            raise SealError(f"the seal processes could not start: {error}") from error
        except TimeoutError as error:
            raise SealError(
                f"the seal processes did not start within {WARM_UP_TIME_LIMIT:.0f} s"
            ) from error

    @property
    def process_ids(self) -> tuple[int, ...]:
        # The pool's own table of its processes (no public API lists them).
        processes = getattr(self._pool, "_processes", None) or {}
        return tuple(sorted(processes))

    async def run(self, function: Callable[..., _T], /, *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            if self._closed:
                raise RuntimeError("the seal is closed")
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, function, *args)
            except BrokenProcessPool as error:
                if attempt == 2:
                    raise SealError("the seal processes stopped again while sealing") from error
                log.warning("a seal process stopped (%s); starting them again", error)
                self._replace(pool)
        raise AssertionError("unreachable")

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A new pool for a broken one, once however many signatures saw it break."""
        if self._closed or self._pool is not broken:
            return
        # The broken pool's other processes stay otherwise (they ignore SIGTERM, and
        # nobody sends them the end of work any more): end them, with their keys.
        _end_pool(broken, wait=0.0, cancel=True)
        self._pool = self._new_pool()
        for started in self._start_all(self._pool):
            started.add_done_callback(_log_start_failure)

    def close(self) -> None:
        """Finish the work under way and wait until every process has ended; one that
        has not ended after :data:`CLOSE_TIME_LIMIT` seconds is killed (a stop must
        not hang on it)."""
        self._closed = True
        _end_pool(self._pool, wait=CLOSE_TIME_LIMIT, cancel=False)


def _end_pool(pool: ProcessPoolExecutor, *, wait: float, cancel: bool) -> None:
    """Shut a pool down (``cancel``: drop the work not yet started); kill the
    processes still running after ``wait`` seconds."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    # The pool's manager thread reaps its processes (no public API gives it). Waiting
    # for the processes here as well would race it for their exit status: the loser's
    # ``waitpid`` fails, and multiprocessing then takes an ended process for a live one.
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=cancel)
    if manager is not None:
        manager.join(timeout=wait)
    stuck = [process for process in processes if process.is_alive()]
    for process in stuck:
        if wait:
            log.warning("a seal process did not end in time; killing it")
        process.kill()
    if stuck and manager is not None:
        manager.join(timeout=5)


def _log_start_failure(started: Future[int]) -> None:
    error = started.exception()
    if error is not None:
        log.error("a seal process could not start again: %s", error)


@dataclass
class _ProcessSeal:
    """What a seal process keeps for its lifetime."""

    signer: Signer
    validation_context: ValidationContext | None
    timestamper: TimeStamper | None
    loop: SigningLoop


#: In a seal process: its key, or why it has none (told to every job it gets).
_PROCESS_SEAL: _ProcessSeal | SealError | None = None


def _start_seal_process(settings: SigningSettings, preload: Sequence[str] = ()) -> None:
    """A seal process's initializer: load the key and the rest once.

    Never raises: an initializer's exception would only break the pool, with the
    reason lost; the reason is kept and every job raises it instead.
    """
    global _PROCESS_SEAL
    # Ctrl-C and a service manager's SIGTERM are for the bot, which finishes the
    # signatures under way and then ends us (and if it dies, we end with it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _end_with_the_bot()
    try:
        for module in preload:
            importlib.import_module(module)
        context = _validation_context(settings.trust_roots)
        signer = load_signer(settings)
    except SealError as error:
        _PROCESS_SEAL = error
        return
    except Exception as error:
        _PROCESS_SEAL = SealError(f"the seal process cannot start: {type(error).__name__}")
        return
    # Its loop and TSA connections end with the process (closing them in an exit
    # finalizer made the process outlive the pool's shutdown, and the stop kill it).
    loop = SigningLoop(settings.tsa_url)
    _PROCESS_SEAL = _ProcessSeal(signer, context, loop.timestamper, loop)
    _warm_up(_PROCESS_SEAL)
    # Log out of a PKCS#11 token when the process ends (a pool's processes end
    # through multiprocessing's exit, which runs these).
    multiprocessing_util.Finalize(None, close_signer, args=(signer,), exitpriority=10)


#: The blank warm-up seal's stamp time: it is never seen, so no clock is read for it.
WARM_UP_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)


def _warm_up(kept: _ProcessSeal) -> None:
    """Seal a blank page once, unseen, as the process starts: the first decision it
    seals then pays no first-time costs (pyHanko's and reportlab's lazy imports and
    caches, the seal certificate's first validation). The TSA is not asked here: the
    bot's start must not wait for it (a TSA that is down or slow would hold the start
    for its whole time limit); pyHanko's one extra request per client (a sample token)
    falls to the first decision. A failure here is left for the first real signature
    to report, as it was before."""
    from reportlab.pdfgen.canvas import Canvas

    try:
        page = io.BytesIO()
        canvas = Canvas(page)
        canvas.showPage()
        canvas.save()
        seal_pdf(
            page.getvalue(),
            signer=kept.signer,
            stamp=StampInfo("-", "-", "-", WARM_UP_MOMENT, "-"),
            evidence=None,
            validation_context=kept.validation_context,
            box=SignatureBox(page=0, x1=20, y1=20, x2=220, y2=100),
            loop=kept.loop,
        )
    except Exception:
        return


def _end_with_the_bot() -> None:
    """End this seal process when the bot's process ends, however it ends.

    A pool's process waits for work on a pipe whose writing end it holds itself, so
    it would never notice a bot killed with SIGKILL and would stay behind, holding the
    seal key (and a token session), until the machine restarts. A thread watches the
    bot's process instead and ends this one the moment it is gone.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch(sentinel: int) -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)

    threading.Thread(
        target=watch, args=(parent.sentinel,), name="seal-watch-bot", daemon=True
    ).start()


def _process_seal() -> _ProcessSeal:
    kept = _PROCESS_SEAL
    if isinstance(kept, SealError):
        raise kept
    if kept is None:
        raise SealError("this process is not a seal process")
    return kept


def _seal_process_ready() -> int:
    """The warm-up job: the process's id once it holds the key, else its error."""
    _process_seal()
    return os.getpid()


def _with_process_seal(function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """In a seal process: :meth:`Seal._sealing`'s call, with this process's seal."""
    kept = _process_seal()
    return function(
        *args,
        signer=kept.signer,
        validation_context=kept.validation_context,
        timestamper=kept.timestamper,
        loop=kept.loop,
        **kwargs,
    )


def render_and_seal(
    render: Callable[[], bytes | None] | None,
    fallback: bytes,
    *,
    signer: Signer,
    stamp: StampInfo,
    evidence: Callable[[bool], Mapping[str, Any] | None],
    validation_context: ValidationContext | None = None,
    timestamper: TimeStamper | None = None,
    loop: SigningLoop | None = None,
) -> SealedVersion:
    """:func:`seal_pdf` on what ``render()`` gives, or on ``fallback`` when it gives None
    or fails (the failure's class name is returned, for the caller's log: a seal
    process logs nothing). Blocking: see :func:`seal_pdf`."""
    failure: str | None = None
    try:
        document = render() if render is not None else None
    except Exception as error:
        document, failure = None, type(error).__name__
    rendered = document is not None
    pdf = seal_pdf(
        document if document is not None else fallback,
        signer=signer,
        stamp=stamp,
        evidence=evidence(rendered),
        validation_context=validation_context,
        timestamper=timestamper,
        loop=loop,
    )
    return SealedVersion(pdf, rendered, failure)


async def sign_decision(
    pdf: bytes,
    *,
    signer: Signer,
    stamp: StampInfo,
    evidence: Mapping[str, Any] | None,
    timestamper_url: str | None = None,
    trust_roots: Sequence[Path] = (),
    timestamper: TimeStamper | None = None,
    box: SignatureBox | None = None,
) -> bytes:
    """Seal ``pdf`` in a worker thread, reading ``trust_roots`` for this one signature.

    For one-off signatures (tests, the benchmark); the bot signs through a
    :class:`Seal`, which reads its trust roots once. ``timestamper_url`` makes it
    PAdES B-T through an RFC 3161 TSA; ``timestamper`` does the same with any
    pyHanko timestamper (tests). The rest is :func:`seal_pdf`.
    """
    if timestamper_url is not None and timestamper is not None:
        raise ValueError("give timestamper_url or timestamper, not both")
    if timestamper_url is not None:
        timestamper = HTTPTimeStamper(timestamper_url, timeout=15)

    def job() -> bytes:
        return seal_pdf(
            pdf,
            signer=signer,
            stamp=stamp,
            evidence=evidence,
            validation_context=_validation_context(trust_roots),
            timestamper=timestamper,
            box=box,
        )

    return await asyncio.to_thread(job)


#: Room for the CMS signature in the PDF, in bytes (written as hex, so twice that in
#: the file): the seal certificate and its chain, the signed attributes, and with a
#: TSA its token and certificates. A 4096-bit RSA chain of three with a timestamp
#: needs about 9 KB; sealing fails loudly (never silently) if it ever does not fit.
SIGNATURE_BYTES_RESERVED = 24 * 1024


def seal_pdf(
    pdf: bytes,
    *,
    signer: Signer,
    stamp: StampInfo,
    evidence: Mapping[str, Any] | None,
    validation_context: ValidationContext | None = None,
    timestamper: TimeStamper | None = None,
    box: SignatureBox | None = None,
    loop: SigningLoop | None = None,
) -> bytes:
    """Seal ``pdf`` in its reserved signature field and return the signed PDF.

    Blocking, and CPU-heavy: call it from a worker thread (:class:`Seal` does),
    never from the event loop; it runs pyHanko's synchronous API, which brings
    its own short-lived event loop for the TSA request.

    ``evidence`` (JSON-serialisable; None for none) is embedded first, so the
    signature covers it. With ``validation_context`` the seal certificate (and
    the TSA's) is validated before signing, so a misconfigured key fails here and
    not in a verifier's hands. ``timestamper`` makes it PAdES B-T. ``box`` places
    the stamp in a PDF that has no reserved field (not one of ours). ``loop``: the
    kept event loop to run pyHanko on (else it makes one for this signature).
    """
    labels = _STAMP_LABELS.get(stamp.language, _STAMP_LABELS["sv"])
    if stamp.record:
        labels = {
            **labels,
            "signer": labels["record_signer"],
            "reason": labels["record_reason"],
            "evidence": labels["record_evidence"],
        }
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    if evidence is not None:
        _embed_evidence(writer, evidence, stamp, labels["evidence"])
    field_spec = _field_spec(writer, box)
    metadata = PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256",
        subfilter=SigSeedSubFilter.PADES,
        certify=False,
        name=stamp.signer_name,
        reason=labels["reason"].format(
            name=stamp.signer_name, role=stamp.signer_role, method=stamp.method_label
        ),
        app_build_props=_APPLICATION,
        validation_context=validation_context,
        signer_key_usage={"non_repudiation"},
    )
    pdf_signer = PdfSigner(
        metadata,
        signer,
        timestamper=timestamper,
        stamp_style=_stamp_style(),
        new_field_spec=field_spec,
    )
    output = io.BytesIO()
    options: dict[str, Any] = {
        "output": output,
        "appearance_text_params": _stamp_text(stamp, labels, signer),
        # A fixed reservation spares pyHanko its dry-run signature, which it makes
        # only to estimate the size: half of the CPU a seal costs.
        "bytes_reserved": SIGNATURE_BYTES_RESERVED,
    }
    try:
        if loop is None:
            pdf_signer.sign_pdf(writer, **options)
        else:
            loop.run(_sign_and_release(pdf_signer, writer, options, validation_context))
    except SealError:
        raise
    except Exception as error:
        raise SealError(f"sealing failed: {type(error).__name__}: {error}") from error
    return output.getvalue()


async def _sign_and_release(
    pdf_signer: PdfSigner,
    writer: IncrementalPdfFileWriter,
    options: Mapping[str, Any],
    validation_context: ValidationContext | None,
) -> None:
    """What pyHanko's synchronous ``sign_pdf`` runs, on a kept loop: sign, then let the
    validation context release what it opened for this signature."""
    try:
        await pdf_signer.async_sign_pdf(writer, **options)
    finally:
        if validation_context is not None:
            await validation_context.aclose()


class SigningLoop:
    """An event loop kept for a seal's signatures, with the TSA client that uses it.

    pyHanko's synchronous API starts an event loop per signature, and its TSA client
    then opens a client session (with a TLS context loaded from the CA bundle) and a
    connection for each request: tens of milliseconds of CPU and a connection set-up
    per decision. Kept here, the TSA's connection is reused between signatures. Used
    by one thread at a time (the seal's worker, or a seal process's only one).
    """

    def __init__(self, tsa_url: str | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session = LazySession()
        self.timestamper = (
            HTTPTimeStamper(tsa_url, timeout=15, session=self._session)
            if tsa_url is not None
            else None
        )

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        """Close the TSA's connections and the loop (when nothing runs on it)."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        try:
            loop.run_until_complete(self._session.close())
        finally:
            loop.close()


def _embed_evidence(
    writer: IncrementalPdfFileWriter,
    evidence: Mapping[str, Any],
    stamp: StampInfo,
    description: str,
) -> None:
    try:
        data = json.dumps(
            evidence, ensure_ascii=False, sort_keys=True, indent=2, default=_json_default
        ).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise SealError(f"the identification evidence is not JSON: {error}") from error
    stream = embed.EmbeddedFileObject.from_file_data(
        writer,
        data,
        mime_type="application/json",
        params=embed.EmbeddedFileParams(creation_date=stamp.signed_at),
    )
    embed.embed_file(
        writer,
        embed.FileSpec(
            file_spec_string=EVIDENCE_FILE,
            file_name=EVIDENCE_FILE,
            embedded_data=stream,
            description=description,
        ),
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"evidence value of type {type(value).__name__} is not JSON")


def _field_spec(writer: IncrementalPdfFileWriter, box: SignatureBox | None) -> SigFieldSpec | None:
    """None when the document has its reserved, unsigned field; else a new field at ``box``."""
    for name, value, _ in enumerate_sig_fields(writer.prev, filled_status=None):
        if name != SIGNATURE_FIELD:
            continue
        if value is not None:
            raise SealError(f"the signature field {SIGNATURE_FIELD!r} is already signed")
        return None
    if box is None:
        raise SealError(
            f"the document has no reserved signature field {SIGNATURE_FIELD!r}; "
            "render it with signing.document or pass box="
        )
    return SigFieldSpec(
        sig_field_name=SIGNATURE_FIELD,
        on_page=box.page,
        box=(round(box.x1), round(box.y1), round(box.x2), round(box.y2)),
    )


def _validation_context(trust_roots: Sequence[Path]) -> ValidationContext | None:
    """The seal certificate's trust roots, read from disk (once per :class:`Seal`)."""
    if not trust_roots:
        return None
    roots = []
    for path in trust_roots:
        try:
            roots += load_certs_from_pemder([str(path)])
        except (OSError, ValueError) as error:
            raise SealError(f"cannot read the trust root {path}: {type(error).__name__}") from error
    return ValidationContext(trust_roots=roots)


def _stamp_style() -> TextStampStyle:
    """Six lines of Helvetica on an opaque white ground that hides the reserved frame.

    Built per signature: pyHanko binds the background to the writer it renders into.
    """
    return TextStampStyle(
        stamp_text="\n".join(f"%({key})s" for key in _STAMP_LINES),
        text_box_style=TextBoxStyle(
            font=SimpleFontEngineFactory("Helvetica", 0.5),
            font_size=9,
            leading=12,
            box_layout_rule=SimpleBoxLayoutRule(
                x_align=AxisAlignment.ALIGN_MIN,
                y_align=AxisAlignment.ALIGN_MID,
                margins=Margins.uniform(2),
            ),
        ),
        inner_content_layout=SimpleBoxLayoutRule(
            x_align=AxisAlignment.ALIGN_MIN,
            y_align=AxisAlignment.ALIGN_MID,
            margins=Margins(left=8, right=6, top=4, bottom=4),
        ),
        border_width=1,
        border_color=(0.15, 0.3, 0.55),
        background=RawContent(b"1 g 0 0 1 1 re f", box=BoxConstraints(1, 1)),
        background_layout=SimpleBoxLayoutRule(
            x_align=AxisAlignment.ALIGN_MIN,
            y_align=AxisAlignment.ALIGN_MIN,
            inner_content_scaling=InnerScaling.STRETCH_FILL,
        ),
        background_opacity=1.0,
    )


def _stamp_text(stamp: StampInfo, labels: Mapping[str, str], signer: Signer) -> dict[str, str]:
    local = stamp.signed_at.astimezone(LOCAL_TIME)
    seal_name = ""
    if signer.signing_cert is not None:
        seal_name = signer.signing_cert.subject.native.get("common_name", "")
    values = {
        "signer": stamp.signer_name,
        "role": stamp.signer_role,
        "time": local.strftime("%Y-%m-%d %H:%M %Z"),
        "method": stamp.method_label,
        "case": stamp.case_number,
        "seal": seal_name,
    }
    return {key: _plain(f"{labels[key]}: {value}") for key, value in values.items()}


_PUNCTUATION = str.maketrans(
    {
        "–": "-",
        "—": "-",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "„": '"',
        "…": "...",
        "\u00a0": " ",
        "\u00ad": None,
    }
)


def _plain(text: str) -> str:
    """Text the stamp's standard font shows right: Latin-1 only, one line.

    The stamp writes PDFDocEncoding into a WinAnsi font; the two agree on ASCII
    and Latin-1 letters (å ä ö é ü), not elsewhere. Other letters lose their accent
    (Ş -> S) or become "?".
    """
    out: list[str] = []
    for character in unicodedata.normalize("NFC", text.translate(_PUNCTUATION)):
        code = ord(character)
        if character in "\r\n\t":
            out.append(" ")
        elif code < 0x20 or 0x7F <= code < 0xA1:
            continue
        elif code <= 0xFF:
            out.append(character)
        else:
            simpler = unicodedata.normalize("NFKD", character)
            kept = "".join(c for c in simpler if 0x20 <= ord(c) < 0x7F)
            out.append(kept or "?")
    return "".join(out).strip()
