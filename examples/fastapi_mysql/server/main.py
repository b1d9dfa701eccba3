"""FastAPI CRUD for authors and articles.

The app never calls ``Base.metadata.create_all``: the schema belongs to Alembic, and
``alembic-repair bootstrap`` (run by backend.sh before uvicorn) creates and migrates it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db import get_database_url, get_session, make_engine, make_sessionmaker
from server.models import Article, Author, Base

SessionDep = Annotated[Session, Depends(get_session)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
ModelT = TypeVar("ModelT", bound=Base)


# Schemas. In the Update schemas an omitted field is left unchanged; a NOT NULL column
# (name, title, author_id) may be omitted but not set to null.


def _reject_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be omitted, but not null")
    return value


NotNull = AfterValidator(_reject_null)


class AuthorCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    email: str | None = Field(default=None, max_length=255)


class AuthorUpdate(BaseModel):
    name: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=100)
    email: str | None = Field(default=None, max_length=255)


class AuthorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str | None


class ArticleCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str | None = None
    author_id: int


class ArticleUpdate(BaseModel):
    title: Annotated[str | None, NotNull] = Field(default=None, min_length=1, max_length=200)
    body: str | None = None
    author_id: Annotated[int | None, NotNull] = None


class ArticleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str | None
    author_id: int
    created_at: datetime


# Helpers.


def get_or_404(session: Session, model: type[ModelT], id_: int) -> ModelT:
    obj = session.get(model, id_)
    if obj is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{model.__name__} {id_} not found")
    return obj


def commit(session: Session, obj: Base | None = None) -> None:
    """Commit; a constraint violation (duplicate email, author still has articles) is a 409."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "Conflicts with existing data") from exc
    if obj is not None:
        session.refresh(obj)  # load server-side defaults such as created_at


def apply(obj: Base, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        setattr(obj, field, value)


router = APIRouter()


# Authors.


@router.post("/authors", response_model=AuthorRead, status_code=status.HTTP_201_CREATED)
def create_author(data: AuthorCreate, session: SessionDep) -> Author:
    author = Author(**data.model_dump())
    session.add(author)
    commit(session, author)
    return author


@router.get("/authors", response_model=list[AuthorRead])
def list_authors(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[Author]:
    return list(session.scalars(select(Author).order_by(Author.id).limit(limit).offset(offset)))


@router.get("/authors/{author_id}", response_model=AuthorRead)
def read_author(author_id: int, session: SessionDep) -> Author:
    return get_or_404(session, Author, author_id)


@router.patch("/authors/{author_id}", response_model=AuthorRead)
def update_author(author_id: int, data: AuthorUpdate, session: SessionDep) -> Author:
    author = get_or_404(session, Author, author_id)
    apply(author, data.model_dump(exclude_unset=True))
    commit(session, author)
    return author


@router.delete("/authors/{author_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_author(author_id: int, session: SessionDep) -> None:
    session.delete(get_or_404(session, Author, author_id))
    commit(session)


# Articles.


@router.post("/articles", response_model=ArticleRead, status_code=status.HTTP_201_CREATED)
def create_article(data: ArticleCreate, session: SessionDep) -> Article:
    get_or_404(session, Author, data.author_id)
    article = Article(**data.model_dump())
    session.add(article)
    commit(session, article)
    return article


@router.get("/articles", response_model=list[ArticleRead])
def list_articles(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[Article]:
    query = select(Article).order_by(Article.id).limit(limit).offset(offset)
    return list(session.scalars(query))


@router.get("/articles/{article_id}", response_model=ArticleRead)
def read_article(article_id: int, session: SessionDep) -> Article:
    return get_or_404(session, Article, article_id)


@router.patch("/articles/{article_id}", response_model=ArticleRead)
def update_article(article_id: int, data: ArticleUpdate, session: SessionDep) -> Article:
    article = get_or_404(session, Article, article_id)
    changes = data.model_dump(exclude_unset=True)
    if "author_id" in changes:
        get_or_404(session, Author, changes["author_id"])
    apply(article, changes)
    commit(session, article)
    return article


@router.delete("/articles/{article_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_article(article_id: int, session: SessionDep) -> None:
    session.delete(get_or_404(session, Article, article_id))
    commit(session)


# The application.


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the app. The URL is resolved here (``DATABASE_URL``, else MYSQL_*, else SQLite);
    creating the engine does not connect, so importing this module stays cheap."""
    engine = make_engine(database_url or get_database_url())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="FastAPI + MySQL example", lifespan=lifespan)
    app.state.engine = engine
    app.state.SessionLocal = make_sessionmaker(engine)
    app.include_router(router)
    return app


app = create_app()
