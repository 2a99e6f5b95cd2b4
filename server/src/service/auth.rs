//! Bearer tokens: hashed at rest, a role each; the bootstrap admin token.

use chrono::Utc;
use entity::api_token::{self, Role};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Actor, Services};
use crate::config::SecretString;
use crate::error::{Error, Result};

/// sha256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Services {
    /// Makes sure an admin token exists. With `given`, that token is (re)registered; without,
    /// a new one is generated if no admin token exists yet and returned so it can be printed once.
    pub async fn bootstrap_admin(&self, given: Option<&SecretString>) -> Result<Option<String>> {
        let (token, generated) = match given {
            Some(t) if t.expose().len() >= 16 => (t.expose().to_owned(), false),
            Some(_) => {
                return Err(Error::invalid(
                    "SNAPGRES_ADMIN_TOKEN",
                    "must be at least 16 characters",
                ))
            }
            None => {
                let any_admin = api_token::Entity::find()
                    .filter(api_token::Column::Role.eq(Role::Admin))
                    .filter(api_token::Column::RevokedAt.is_null())
                    .one(&self.db)
                    .await?;
                if any_admin.is_some() {
                    return Ok(None);
                }
                (format!("sgp_{}", crate::secrets::random_token(32)), true)
            }
        };
        let hash = hash_token(&token);
        if api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash.clone()))
            .one(&self.db)
            .await?
            .is_none()
        {
            api_token::ActiveModel {
                id: Set(Uuid::new_v4()),
                name: Set("bootstrap-admin".to_owned()),
                role: Set(Role::Admin),
                token_hash: Set(hash),
                created_at: Set(Utc::now()),
                revoked_at: Set(None),
            }
            .insert(&self.db)
            .await?;
        }
        Ok(generated.then_some(token))
    }

    /// The actor behind an `Authorization` header value (`Bearer <token>`).
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Actor> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Error::Unauthenticated)?;
        let row = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash_token(token)))
            .filter(api_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or(Error::Unauthenticated)?;
        Ok(Actor {
            token_id: row.id,
            name: row.name,
            role: row.role,
        })
    }
}

/// Token administration (the `snapgres token` command).
pub struct TokenAdmin {
    db: sea_orm::DatabaseConnection,
}

impl TokenAdmin {
    /// Over a migrated database.
    pub fn new(db: sea_orm::DatabaseConnection) -> Self {
        Self { db }
    }

    /// Creates a token; returns its row and the token itself (shown once, stored hashed).
    pub async fn create(&self, name: &str, role: Role) -> Result<(api_token::Model, String)> {
        if name.is_empty() || name.len() > 64 {
            return Err(Error::invalid("name", "must be 1 to 64 characters"));
        }
        let token = format!("sgp_{}", crate::secrets::random_token(32));
        let row = api_token::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(name.to_owned()),
            role: Set(role),
            token_hash: Set(hash_token(&token)),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok((row, token))
    }

    /// Every token (hashes never leave the database layer's caller).
    pub async fn list(&self) -> Result<Vec<api_token::Model>> {
        use sea_orm::QueryOrder;
        Ok(api_token::Entity::find()
            .order_by_asc(api_token::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Revokes the token with this id, or every live token with this name; returns how many.
    pub async fn revoke(&self, id_or_name: &str) -> Result<u64> {
        use sea_orm::sea_query::Expr;
        let mut q = api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Expr::value(Some(Utc::now())))
            .filter(api_token::Column::RevokedAt.is_null());
        q = match Uuid::parse_str(id_or_name) {
            Ok(id) => q.filter(api_token::Column::Id.eq(id)),
            Err(_) => q.filter(api_token::Column::Name.eq(id_or_name)),
        };
        let n = q.exec(&self.db).await?.rows_affected;
        if n == 0 {
            return Err(Error::not_found("token", id_or_name, None));
        }
        Ok(n)
    }
}
