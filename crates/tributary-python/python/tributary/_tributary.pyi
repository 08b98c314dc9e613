"""The extension module (Rust): the few calls the package's typed API is made of. Reports cross as JSON."""

from os import PathLike
from typing import Awaitable, Mapping, Optional, Sequence, Tuple, Union

__version__: str

class NativeAgent:
    def __init__(
        self,
        *,
        sources_file: Optional[Union[str, PathLike[str]]] = None,
        sources_json: Optional[str] = None,
        models: Sequence[str] = ...,
        workers: Optional[int] = None,
        executor: str = "threads",
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        inference_cost: Optional[str] = None,
        faults: Mapping[str, str] = ...,
    ) -> None: ...
    def source_names(self) -> list[str]: ...
    def services_url(self) -> Optional[str]: ...
    def workers(self) -> int: ...
    def limits(self) -> Tuple[float, float]: ...
    def ask(
        self,
        question: str,
        *,
        mode: str = "concurrent",
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        faults: Mapping[str, str] = ...,
        stream: bool = False,
    ) -> NativeRun: ...
    def compare(
        self,
        question: str,
        *,
        deadline: Optional[float] = None,
        per_source_timeout: Optional[float] = None,
        faults: Mapping[str, str] = ...,
    ) -> NativeRun: ...
    def batch(
        self,
        input: Union[str, PathLike[str]],
        db: Union[str, PathLike[str]],
        *,
        format: Optional[str] = None,
    ) -> NativeBatch: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

class NativeRun:
    def cancel(self) -> None: ...
    def done(self) -> bool: ...
    def wait(self) -> Awaitable[str]: ...
    def next_event(self) -> Awaitable[Optional[Tuple[str, str]]]: ...

class NativeBatch:
    def stats(self) -> str: ...
    def stop(self) -> None: ...
    def abandon(self) -> None: ...
    def done(self) -> bool: ...
    def wait(self) -> Awaitable[str]: ...
